"""``python -m dynoserver [uvicorn options]``: how both runtimes launch the server.

SIGHUP asks the server to re-read its key file and database credential, and a
rotation may send it at any moment, including while the server starts. Its default
action ends the process, and the application installs its own handler only once
``create_app`` runs, which is most of a second of imports away. So SIGHUP is ignored
from the first line here: anything sent before ``create_app`` is harmless, as the
keys are read after it (an ignored signal stays ignored across the exec of a
spawned worker, so this covers the workers too).

Workers: ``--workers N`` or ``WEB_CONCURRENCY`` (uvicorn reads both; default 1).
With several, uvicorn's process manager receives SIGHUP; uvicorn 0.54 answers it by
replacing every worker one after another (``Multiprocess.restart_all``): no request
in flight is lost, but every keep-alive connection to an old worker is closed and
each replacement re-imports the application, a latency spike under load. Rotation
only needs the files re-read, so the manager forwards SIGHUP to each worker instead,
and each reloads in place as a single-process server does. Every worker reports
what it loaded into a private directory made here (``dynoserver.workers``), which
``/health`` aggregates.
"""

import signal

signal.signal(signal.SIGHUP, signal.SIG_IGN)

import atexit  # noqa: E402  (after the signal, on purpose)
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import uvicorn  # noqa: E402

from dynoserver import workers  # noqa: E402  (standard library only)


def _forward_sighup(self) -> None:
    for process in self.processes:
        if process.pid is not None and process.process.is_alive():
            try:
                os.kill(process.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass  # it just exited: its replacement reads the files when it starts


def main() -> None:
    argv = sys.argv[1:]
    os.environ[workers.WORKERS_VARIABLE] = str(workers.worker_count(argv, os.environ))
    state = tempfile.mkdtemp(prefix="dynoserver-workers-")  # mode 0700, ours alone
    atexit.register(shutil.rmtree, state, True)
    os.environ[workers.STATE_DIR_VARIABLE] = state  # inherited by the spawned workers
    from uvicorn.supervisors.multiprocess import Multiprocess

    Multiprocess.handle_hup = _forward_sighup  # see the module docstring
    uvicorn.main.main(args=["dynoserver.app:create_app", "--factory", *argv], prog_name="dynoserver")


if __name__ == "__main__":
    main()
