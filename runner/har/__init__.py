"""Turning a recorded browser session (HAR) into a scenario: ``reader`` streams the WebSocket
sessions out of the file, ``convert`` writes them as a scenario (YAML text with comments)."""
