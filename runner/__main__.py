"""``python -m runner`` and the ``wsload`` command: ``main`` catches SIGINT and SIGTERM before
anything else is imported (the command line's imports take ~0.1 s, and a signal in them used to
print a traceback, or with SIGTERM end wsload with 143 and nothing said), then hands over to
``runner.cli.entry``, which installs the handlers a run uses."""

import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        from runner.cli import entry
    except KeyboardInterrupt:
        sys.stderr.write("wsload: interrupted before any scenario ran\n")
        sys.exit(130)
    entry()


if __name__ == "__main__":
    main()
