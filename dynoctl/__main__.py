"""``python -m dynoctl`` and the ``dynoctl`` console script.

The CLI's modules take a moment to import (longer on a busy machine); a Ctrl-C or
SIGTERM in that moment is still an interruption like any other: 'interrupted', exit
130, no traceback. dynoctl.cli takes over both signals once imported.
"""

import signal
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        from dynoctl.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
