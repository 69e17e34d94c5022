"""The command line as a newcomer meets it: fast start, progress, warnings, summaries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gmmkit
from gmmkit import _cli_constants
from gmmkit.apps._common import COVARIANCE_HELP
from gmmkit.core.covariance import COVARIANCE_TYPES
from gmmkit.mixture import GaussianMixture

HEAVY = ("numpy", "scipy", "sklearn")


# ----------------------------------------------------------------------------- start-up
@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["fit", "--help"], ["select", "--help"],
             ["segment", "--help"], ["info", "--help"]]
)
def test_version_and_help_import_no_heavy_module(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from gmmkit.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout[-300:]


def test_literal_choices_and_defaults_equal_the_library() -> None:
    assert _cli_constants.COVARIANCE_TYPES == tuple(COVARIANCE_TYPES)
    assert _cli_constants.COVARIANCE_HELP == COVARIANCE_HELP
    params = GaussianMixture().get_params()
    for name, value in _cli_constants.GM_DEFAULTS.items():
        assert params[name] == value, name
    constraint = GaussianMixture._parameter_constraints["init_params"][0]
    assert set(_cli_constants.INIT_METHODS) == set(constraint.options)
    assert _cli_constants.INIT_METHODS[0] == params["init_params"]


def test_package_names_load_lazily() -> None:
    code = (
        "import sys, gmmkit\n"
        f"assert not any(m in sys.modules for m in {HEAVY!r})\n"
        "assert gmmkit.GaussianMixture.__name__ == 'GaussianMixture'\n"
        "assert callable(gmmkit.mixture.fit_progress)\n"
        "assert 'numpy' in sys.modules\n"
        "try:\n"
        "    gmmkit.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(gmmkit.__all__) <= set(dir(gmmkit))
