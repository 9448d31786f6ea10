#!/usr/bin/env bash
# The test command of the README and of CI: installs what the tests need, then runs pytest.
# Headless Chromium (Debian's package) renders the HTML report in the browser tests; pip brings
# the project with its test extras into the active Python environment.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "tests/run.sh: installing Chromium (apt) for the HTML report's browser tests" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
python -m pip install --quiet ".[test]"
# The Node `ws` library: a reference server the tests run beside our own (tests/node/server.js).
if [ ! -d tests/node/node_modules/ws ]; then
  npm ci --prefix tests/node --silent --no-audit --no-fund
fi
python -m pytest "$@"
