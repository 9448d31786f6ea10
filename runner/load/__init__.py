"""The load engine: plans (pure) and the workers that follow them."""
