"""``python -m runner.steps [--check]``: write (or check) the shipped scenario schema, assembled
from the step kinds (``runner.steps.schema``)."""

from runner.steps.schema import main

raise SystemExit(main())
