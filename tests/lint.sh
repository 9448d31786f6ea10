#!/usr/bin/env bash
# The house's checks, run by CI after the tests (needs the test extras: bash tests/run.sh installs them).
# ruff (style), mypy (types), import-linter (the layers written in pyproject.toml), and the shipped
# scenario schema equal to the one the step kinds assemble.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check runner tests bench
mypy
lint-imports
python -m runner.steps --check
