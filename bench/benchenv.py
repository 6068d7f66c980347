"""What the benchmarks' child processes run with."""

import os

# As an installed package runs: with its bytecode cached. pip compiles site-packages at
# install time, but an editable checkout under PYTHONDONTWRITEBYTECODE=1 (set on these
# machines) would recompile dynoctl's own sources on every run, and only those.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
