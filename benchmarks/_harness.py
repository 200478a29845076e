"""Shared plumbing of the benchmarks: one subprocess per system, JSON lines out."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys


def blobs_store(args, *, cluster_std: float, seed: int):
    """The Gaussian-blobs Zarr store of ``--rows/--features/--k/--chunk`` at ``args.store``
    (made once; an existing store is reused)."""
    from pathlib import Path

    from dkmeans.datasets import make_blobs, write_zarr

    path = Path(args.store)
    if not path.exists():
        X, _, _ = make_blobs(args.rows, args.features, args.k, cluster_std=cluster_std,
                             chunks=args.chunk, random_state=seed)  # fmt: skip
        write_zarr(X, path)
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of this process (each system runs in its own)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_line(record: dict) -> None:
    print(json.dumps(record), flush=True)


def system_line(workload: dict, seconds: float) -> dict:
    import dask
    import sklearn

    import dkmeans

    return {
        "system": "system", "python": platform.python_version(), "cpus": os.cpu_count(),
        "machine": platform.machine(), "dkmeans": dkmeans.__version__,
        "dask": dask.__version__, "sklearn": sklearn.__version__, "workload": workload,
        "store_seconds": seconds,
    }  # fmt: skip


def run_systems(script: str, base_args: list[str], systems: list[str], enrich=None) -> dict:
    """Run ``script --one SYSTEM`` for each system in a fresh process; print each line.

    ``enrich(result, results_so_far)`` may add ratio fields before printing.
    """
    results = {}
    for system in systems:
        cmd = [sys.executable, script, *base_args, "--one", system]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            res = {"system": system, "error": proc.stderr.strip().splitlines()[-1:]}
        else:
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        if enrich is not None:
            enrich(res, results)
        results[system] = res
        print_line(res)
    return results


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def run_benchmark(args, *, script, run_system, make_store, store_name, workload, base, summary,
                  enrich=None) -> int:  # fmt: skip
    """The common main: one system in this process (``--one``), or all in subprocesses.

    Makes the store (in a temporary folder unless ``--store`` names one), prints the
    system line, each system's line and the summary line.
    """
    import tempfile
    import time
    from pathlib import Path

    if args.one:
        print_line(run_system(args.one, args))
        return 0
    with tempfile.TemporaryDirectory(prefix="dkmeans-bench-") as tmp:
        if args.store is None:
            args.store = str(Path(tmp) / store_name)
        t = time.perf_counter()
        make_store(args)
        print_line(system_line(workload, time.perf_counter() - t))
        results = run_systems(
            script, ["--store", args.store, *base], args.systems.split(","), enrich
        )
        print_line(summary(results))
    return 0


def run_blobs_benchmark(argv, *, doc: str, script: str, run_system, summary, store_name: str,
                        systems: str, rows: int, features: int, k: int, chunk: int,
                        iterations: int) -> int:  # fmt: skip
    """The main of a benchmark on one blobs store (``--rows/--features/--k/--chunk/
    --iterations/--store/--systems``), with the given defaults."""
    import argparse

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--rows", type=int, default=rows)
    p.add_argument("--features", type=int, default=features)
    p.add_argument("--k", type=int, default=k)
    p.add_argument("--chunk", type=int, default=chunk)
    p.add_argument("--iterations", type=int, default=iterations)
    p.add_argument("--store", help="Zarr path (default: a temporary folder)")
    p.add_argument("--systems", default=systems)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workload = {"rows": args.rows, "features": args.features, "k": args.k,
                "chunk_rows": args.chunk, "iterations": args.iterations}  # fmt: skip
    base = ["--rows", str(args.rows), "--features", str(args.features), "--k", str(args.k),
            "--chunk", str(args.chunk), "--iterations", str(args.iterations)]  # fmt: skip
    return run_benchmark(
        args, script=script, run_system=run_system, summary=summary, store_name=store_name,
        make_store=lambda a: blobs_store(a, cluster_std=2.0, seed=0), workload=workload,
        base=base,
    )  # fmt: skip
