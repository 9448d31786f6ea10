"""Scenario files -> validated, frozen ``runner.scenario.model.Scenario``; every problem reported at once.

The public face of the loader; each job lives in its own module:

- ``pipeline``: the order (YAML with positions -> ``${ENV}`` -> secrets -> JSON Schema -> build)
  and the masking of every problem;
- ``environment``: ``${NAME}`` substitution; ``secrets_scan``: the secrets known before the run;
- ``builder``: the walk that builds the ``Scenario`` in file order, and the ``StepParse`` view
  the step kinds (``runner.steps``) parse their nodes through;
- ``document``: what every part shares (problems, positions, durations, sizes, templates and
  the names they read, files, PEM);
- ``connections``: connection specs, secret headers, URL and target checks;
- ``content``: a step's ``expect`` and a read's ``capture``; ``expressions``: the pure analysis
  of their ``that`` entries and regex sizes;
- ``load_section``: ``load:`` and ``thresholds:``.

Nothing downstream sees a raw dict.
"""

from __future__ import annotations

from runner.loader.connections import target_problem, url_problem
from runner.loader.document import BUILTIN_VARIABLES
from runner.loader.expressions import (
    MAX_REGEX_SIZE,
    MAX_REGEX_TOTAL,
    regex_size,
    that_expression,
    that_problem,
)
from runner.loader.pipeline import load_scenario, load_scenario_text
from runner.scenario.model import (
    MAX_DURATION_S,
    MAX_ITERATIONS,
    MAX_PAYLOAD_BYTES,
    MAX_REPEAT,
    MAX_VUS,
    MAX_WORKERS,
)
from runner.scenario.secrets import is_sensitive_header
from runner.scenario.source import MAX_FILE_BYTES

__all__ = [
    "BUILTIN_VARIABLES",
    "MAX_DURATION_S",
    "MAX_ITERATIONS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REGEX_SIZE",
    "MAX_REGEX_TOTAL",
    "MAX_REPEAT",
    "MAX_SCENARIO_BYTES",
    "MAX_VUS",
    "MAX_WORKERS",
    "is_sensitive_header",
    "load_scenario",
    "load_scenario_text",
    "regex_size",
    "target_problem",
    "that_expression",
    "that_problem",
    "url_problem",
]

#: A scenario file larger than this is refused before it is parsed.
MAX_SCENARIO_BYTES = MAX_FILE_BYTES
