"""The project's own checks run with the tests: lint, strict typing, layer contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_ruff() -> None:
    _run("ruff", "check", ".")


@pytest.mark.slow
def test_mypy_strict() -> None:
    _run("mypy")


def test_import_layers() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-5000:]
