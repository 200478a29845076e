"""The layers point down (import-linter contracts in pyproject.toml), and the public
import paths that moved keep working."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("dkmeans.pipeline", "dkmeans.app.pipeline", "Job"),
        ("dkmeans.cli", "dkmeans.app.cli", "main"),
        ("dkmeans.datasets", "dkmeans.app.datasets", "make_communities"),
        ("dkmeans.deploy", "dkmeans.app.deploy", "open_cluster"),
        ("dkmeans.plot", "dkmeans.app.plot", "save_plots"),
        ("dkmeans.persistence", "dkmeans._engine.model_io", "load"),
        ("dkmeans.io", "dkmeans._engine.store", "open_zarr_array"),
        ("dkmeans.model_selection", "dkmeans._engine.selection", "KSelection"),
    ],
)
def test_moved_modules_keep_their_public_paths(old, new, name):
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    )
