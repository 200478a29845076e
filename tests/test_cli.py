"""The console script, end to end in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "dkmeans.cli", *args], capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_demo_runs_on_a_local_cluster(tmp_path):
    proc = _run("demo", "--rows", "20000", "--features", "4", "--k", "3", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "dashboard: http" in out
    assert "k: 3" in out
    assert "iterations: " in out
    assert (tmp_path / "blobs.zarr").exists()


def test_user_error_is_one_line_without_traceback():
    proc = _run("demo", "--rows", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("dkmeans: error:")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_bench_fit_runs_at_tiny_size(tmp_path):
    """The benchmark itself must not rot: run it in seconds at a tiny size."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_fit.py"), "--rows", "6000",
         "--features", "4", "--k", "3", "--chunk", "1500", "--streamed-iters", "3",
         "--systems", "floor-read,floor-gemm,sklearn,dkmeans-threaded,dkmeans-threaded-streamed",
         "--store", str(tmp_path / "b.zarr")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    by = {line["system"]: line for line in lines}
    assert {"system", "sklearn", "dkmeans-threaded", "summary"} <= set(by)
    assert "error" not in by["dkmeans-threaded"], by["dkmeans-threaded"]
    assert by["dkmeans-threaded"]["init_passes"] == 6
    assert by["dkmeans-threaded"]["inertia_vs_sklearn"] < 1.05


def test_demo_output_is_not_flooded_by_cluster_logs(tmp_path):
    proc = _run("demo", "--rows", "5000", "--features", "3", "--k", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Nanny" not in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "check"),
    [
        (
            "bench_select_k.py",
            [
                "--rows",
                "6000",
                "--features",
                "3",
                "--k",
                "3",
                "--std",
                "1",
                "--chunk",
                "1500",
                "--k-max",
                "5",
            ],
            lambda by: (
                by["summary"]["targets_met"]["passes_vs_longest_fit"]
                and by["dkmeans-lockstep"]["best_k"] == 3
            ),
        ),
        (
            "bench_pca.py",
            ["--rows", "6000", "--features", "16", "--chunk", "1500"],
            lambda by: (
                by["summary"]["targets_met"]["at_most_2_passes"]
                and by["dkmeans-pca"]["data_passes"] == 1
            ),
        ),
    ],
)
def test_other_benchmarks_run_at_tiny_size(tmp_path, script, args, check):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--store",
         str(tmp_path / "b.zarr")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    by = {line["system"]: line for line in map(json.loads, proc.stdout.splitlines())}
    assert not [s for s, line in by.items() if "error" in line], by
    assert check(by), by
