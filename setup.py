"""Bundle the stack (stack/, migrations/) into the wheel as dynoctl/_bundled, so an
installed dynoctl can run a stack from any directory. Everything else is in
pyproject.toml; an editable install reads the checkout's stack/ directly."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
# Real env files, state and caches never ship: only what the repository holds.
IGNORE = shutil.ignore_patterns("*.env", "*.env.bak-*", "__pycache__", "*.pyc", ".dyno")


class BuildPyWithStack(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return
        bundle = Path(self.build_lib) / "dynoctl" / "_bundled"
        for name in ("stack", "migrations"):
            shutil.rmtree(bundle / name, ignore_errors=True)
            shutil.copytree(ROOT / name, bundle / name, ignore=IGNORE)


setup(cmdclass={"build_py": BuildPyWithStack})
