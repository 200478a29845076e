"""Orchestration benchmark: what a pass costs per chunk before a byte is decoded.

A *virtual* store isolates orchestration: a Zarr array of shape (chunks·2048, 8)
float32 in (2048, 8) chunks with ``fill_value=0``, of which only ~50 chunks are
written (an unwritten chunk reads as the fill value and costs no I/O).  Each
(scheduler, chunk count) runs in its own process, so the client's peak RSS is its
own, and measures in that process:

- ``dask-sum``: dask's own ``da.from_zarr(path).sum(axis=0)`` over the same array;
- ``given``: ``KMeans(init=<centres>, persist=False, max_iter=3, tol=0)``: 3 Lloyd
  passes and the labels pass;
- ``kmeans||``: the same fit seeded with k-means|| (seeding passes, then the same).

It prints one JSON line per measurement with ms per chunk per pass, the ratio to
dask's sum measured in the same process, and a summary line with the growth of the
per-chunk cost from the smallest to the largest store.

    python benchmarks/bench_orchestration.py                          # 1k..64k chunks
    python benchmarks/bench_orchestration.py --chunks 200,400 --schedulers threads
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import peak_rss_mb, print_line, ratio, system_line

CHUNK_ROWS, FEATURES, K, WRITTEN = 2048, 8, 4, 50


def make_virtual_store(path: Path, n_chunks: int) -> Path:
    """The virtual store of ``n_chunks`` chunks, ~50 of them written (made once)."""
    import numpy as np
    import zarr

    if path.exists():
        return path
    arr = zarr.create_array(
        str(path), shape=(n_chunks * CHUNK_ROWS, FEATURES), chunks=(CHUNK_ROWS, FEATURES),
        dtype="float32", fill_value=0.0,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10.0, size=(K, FEATURES))
    for c in np.linspace(0, n_chunks - 1, min(WRITTEN, n_chunks)).astype(int):
        lab = rng.integers(K, size=CHUNK_ROWS)
        rows = centers[lab] + rng.normal(size=(CHUNK_ROWS, FEATURES))
        arr[c * CHUNK_ROWS : (c + 1) * CHUNK_ROWS] = rows.astype("float32")
    return path


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def run_one(args) -> dict:
    """One (scheduler, store) in this process: dask's sum, then both fits."""
    import contextlib

    import dask
    import dask.array as da
    import numpy as np

    from dkmeans import KMeans

    n_chunks = args.one_chunks
    if args.one_scheduler == "distributed":
        from distributed import Client, LocalCluster

        ctx = contextlib.ExitStack()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")  # fmt: skip
        ctx.enter_context(cluster)
        ctx.enter_context(Client(cluster))
    else:
        ctx = dask.config.set(scheduler="threads")
    out = {"system": "orchestration", "scheduler": args.one_scheduler, "chunks": n_chunks}
    with ctx:
        x = da.from_zarr(args.store)
        x.sum(axis=0).compute()  # warm: imports, thread pools, workers
        sums = [_timed(lambda: x.sum(axis=0).compute())[0] for _ in range(args.repeat)]
        out["dask_sum_ms_per_chunk"] = 1e3 * min(sums) / n_chunks
        init = np.random.default_rng(1).normal(scale=10.0, size=(K, FEATURES)).astype("float32")
        fits = [(lab, kw) for lab, kw in (("given", {"init": init, "n_init": 1}), ("kmeans||", {}))
                if lab in args.inits.split(",")]  # fmt: skip
        for _, kw in fits:  # warm: numba compiles the kernels once per process
            KMeans(K, max_iter=1, persist=False, random_state=0, fit_sample=None,
                   **kw).fit(x[: 8 * CHUNK_ROWS])  # fmt: skip
        for label, kw in fits:
            km = KMeans(K, max_iter=args.iterations, tol=0.0, persist=False, random_state=0,
                        fit_sample=None, **kw)  # fmt: skip
            seconds, _ = _timed(lambda km=km: km.fit(args.store))
            per_pass = seconds / km.n_passes_
            out[label] = {
                "seconds": seconds, "passes": km.n_passes_,
                "seeding_passes": km.n_seeding_passes_,
                "ms_per_chunk_per_pass": 1e3 * per_pass / n_chunks,
                "lloyd_ms_per_chunk": 1e3 * km.iteration_seconds_ / n_chunks,
                "vs_dask_sum": ratio(per_pass / n_chunks, min(sums) / n_chunks),
                "inertia": float(km.inertia_),
            }  # fmt: skip
        if "given" in out and "kmeans||" in out and out["kmeans||"]["seeding_passes"]:
            g, s = out["given"], out["kmeans||"]
            seeding = (s["seconds"] - g["seconds"]) / s["seeding_passes"]
            out["seeding_ms_per_chunk_per_pass"] = 1e3 * seeding / n_chunks
    out["client_peak_rss_mb"] = peak_rss_mb()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", default="1000,4000,16000,64000")
    p.add_argument("--schedulers", default="threads,distributed")
    p.add_argument("--inits", default="given,kmeans||")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--repeat", type=int, default=3, help="dask-sum repeats (best kept)")
    p.add_argument("--folder", help="where the virtual stores go (default: a temporary one)")
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--one-chunks", type=int, help=argparse.SUPPRESS)
    p.add_argument("--one-scheduler", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_scheduler:
        print_line(run_one(args))
        return 0
    sizes = [int(c) for c in args.chunks.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="dkmeans-orch-") as tmp:
        folder = Path(args.folder or tmp)
        t = time.perf_counter()
        stores = {n: make_virtual_store(folder / f"virtual-{n}.zarr", n) for n in sizes}
        workload = {"chunks": sizes, "chunk_rows": CHUNK_ROWS, "features": FEATURES, "k": K,
                    "written_chunks": WRITTEN, "iterations": args.iterations}  # fmt: skip
        print_line(system_line(workload, time.perf_counter() - t))
        for scheduler in args.schedulers.split(","):
            for n in sizes:
                cmd = [sys.executable, __file__, "--store", str(stores[n]),
                       "--one-chunks", str(n), "--one-scheduler", scheduler,
                       "--inits", args.inits, "--iterations", str(args.iterations),
                       "--repeat", str(args.repeat)]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    res = {"system": "orchestration", "scheduler": scheduler, "chunks": n,
                           "error": proc.stderr.strip().splitlines()[-1:]}  # fmt: skip
                else:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                results[(scheduler, n)] = res
                print_line(res)
    summary = {"system": "summary"}
    for scheduler in args.schedulers.split(","):
        ok = [n for n in sizes if "error" not in results[(scheduler, n)]]
        for label in args.inits.split(","):
            pts = [results[(scheduler, n)].get(label) for n in ok]
            if len(ok) < 1 or any(p is None for p in pts):
                continue
            worst = max(p["vs_dask_sum"] for p in pts)
            growth = ratio(pts[-1]["ms_per_chunk_per_pass"], pts[0]["ms_per_chunk_per_pass"])
            summary[f"{scheduler}_{label}_max_vs_dask_sum"] = worst
            summary[f"{scheduler}_{label}_growth_{ok[0]}_to_{ok[-1]}"] = growth
            summary.setdefault("targets_met", {})[f"{scheduler}_{label}"] = {
                "le_1x_dask_sum": worst <= 1.0,
                "flat_le_1.1x": growth is not None and growth <= 1.1,
            }  # fmt: skip
    print_line(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
