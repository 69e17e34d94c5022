"""Every snippet in README.md runs as pasted: the Python blocks in one fresh process, in
order, in an empty folder; the command-line block's commands through ``gmmkit.cli`` with
the shipped example files."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(README) if lang == language]


def test_readme_has_the_snippets_this_test_runs() -> None:
    assert len(_blocks("python")) >= 4
    assert any(line.startswith("gmmkit ") for line in _cli_lines())


#: Runs README blocks (a JSON list of strings, argv[1]) in order in one interpreter, each
#: in a namespace of its own, as a reader pastes them one at a time: a block that needs a
#: name must import or define it itself (a fresh interpreter per block only repeated the
#: imports of numpy, scikit-learn, dask and torch, half a minute in all).
_RUN_BLOCKS = """
import json, sys, traceback
for number, code in enumerate(json.loads(sys.argv[1]), start=1):
    try:
        exec(compile(code, f"<README python block {number}>", "exec"), {"__name__": "__main__"})
    except BaseException:
        sys.exit(f"README python block {number} failed:\\n{traceback.format_exc()}")
"""


@pytest.mark.slow
def test_python_snippets_run_as_pasted(tmp_path: Path) -> None:
    """All Python blocks, in order, in an empty folder, in a fresh interpreter (not
    pytest's) -- files a block writes stay for the next."""
    pytest.importorskip("distributed")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", _RUN_BLOCKS, json.dumps(_blocks("python"))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr


def _cli_lines() -> list[str]:
    for body in _blocks(""):
        lines = [line.split("  #")[0].strip() for line in body.splitlines()]
        commands = [line for line in lines if line.startswith("gmmkit ")]
        if commands and any("examples/" in c for c in commands):
            return commands
    return []


def test_example_files_are_what_their_script_makes(tmp_path: Path) -> None:
    """The committed example files are reproducible from examples/make_examples.py."""
    script = tmp_path / "make_examples.py"
    shutil.copy(ROOT / "examples" / "make_examples.py", script)
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    assert (tmp_path / "data.csv").read_bytes() == (ROOT / "examples" / "data.csv").read_bytes()
    from PIL import Image

    made = np.asarray(Image.open(tmp_path / "photo.png"))
    shipped = np.asarray(Image.open(ROOT / "examples" / "photo.png"))
    np.testing.assert_array_equal(made, shipped)


@pytest.mark.slow
def test_cli_examples_run_as_written(tmp_path: Path) -> None:
    """Each command of the README's command-line block, in order, from a folder holding
    a copy of examples/ (the demo line is left to tests/test_demo.py)."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    from gmmkit import cli

    commands = [c for c in _cli_lines() if not c.startswith("gmmkit demo")]
    assert len(commands) >= 7
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for command in commands:
            argv = [*shlex.split(command)[1:], "--quiet"]
            with pytest.raises(SystemExit) as exit_info:
                cli.main(argv)
            assert exit_info.value.code in (0, None), f"{command!r} failed"
    finally:
        os.chdir(cwd)
    for name in ("model.gmm", "labels.csv", "best.gmm", "flagged.csv", "segmented.png",
                 "labels.png", "samples.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
