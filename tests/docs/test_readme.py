"""The README is executed: its Python blocks run, its commands exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from corral.cli.main import main

README = Path(__file__).parents[2] / "README.md"
TEXT = README.read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, flags=re.DOTALL)


def test_quick_start_is_exactly_two_commands() -> None:
    quick = TEXT.split("## Quick start", 1)[1]
    first = re.search(r"```bash\n(.*?)```", quick, flags=re.DOTALL)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.slow
def test_python_blocks_run(tmp_path: Path) -> None:
    code = "\n\n".join(_blocks("python"))
    assert "corral.log_model" in code
    env = {**os.environ, "CORRAL_HOME": str(tmp_path / "home"), "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "wine-quality/1 sklearn" in done.stdout


def _documented_commands() -> list[list[str]]:
    found = []
    for line in TEXT.splitlines():
        for match in re.finditer(r"`corral ((?:[a-z][a-z-]* ?){1,2})", line):
            words = [w for w in match.group(1).split() if w.islower() and w.replace("-", "").isalpha()]
            found.append(words)
    unique = {tuple(w) for w in found if w}
    return [list(w) for w in sorted(unique)]


@pytest.mark.parametrize("words", _documented_commands(), ids=" ".join)
def test_documented_commands_exist(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*words, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out
