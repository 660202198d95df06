"""The packages type-check under ``mypy --strict`` (pyproject's [tool.mypy])."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("collector", "exporters", "instrumentation", "proto")


def test_packages_pass_mypy_strict(tmp_path: Path) -> None:
    """Every module of the four packages passes mypy --strict.

    The folders map onto ``tracetables.*`` only when installed, which mypy cannot follow
    through an editable install, so the test lays out the namespace with symlinks.
    """
    namespace = tmp_path / "tracetables"
    namespace.mkdir()
    for package in PACKAGES:
        (namespace / package).symlink_to(ROOT / package, target_is_directory=True)
    args = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / ".mypy_cache"),
    ]
    for package in PACKAGES:
        args += ["-p", f"tracetables.{package}"]
    env = {**os.environ, "MYPYPATH": str(tmp_path)}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
