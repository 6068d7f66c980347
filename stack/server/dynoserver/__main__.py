"""``python -m dynoserver [uvicorn options]``: how both runtimes launch the server.

SIGHUP asks the server to re-read its key file, and a rotation may send it at any
moment, including while the server starts. Its default action ends the process, and
the application installs its own handler only once ``create_app`` runs, which is
most of a second of imports away. So SIGHUP is ignored from the first line here:
anything sent before ``create_app`` is harmless, as the keys are read after it.
"""

import signal

signal.signal(signal.SIGHUP, signal.SIG_IGN)

import sys  # noqa: E402  (after the signal, on purpose)

import uvicorn  # noqa: E402


def main() -> None:
    uvicorn.main.main(args=["dynoserver.app:create_app", "--factory", *sys.argv[1:]], prog_name="dynoserver")


if __name__ == "__main__":
    main()
