"""Scaling benchmark: seconds per Lloyd pass at several row counts, on 1 and 2 workers.

Same blobs workload as bench_fit (32 float32 features, k = 16, 250,000-row chunks),
data persisted on a LocalCluster of single-threaded workers.  Prints one JSON line per
(rows, workers) and a summary with the scaling ratios (linear: 16M ≤ 17 × 1M).

    python benchmarks/bench_scaling.py                         # 1M, 4M, 16M rows
    python benchmarks/bench_scaling.py --rows 20000,80000 --chunk 10000   # seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _harness import print_line, ratio, system_line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="1000000,4000000,16000000")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--chunk", type=int, default=250_000)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--folder", help="where the stores go (default: a temporary folder)")
    args = p.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster
    from dkmeans.datasets import make_blobs, write_zarr

    from dkmeans import KMeans

    sizes = [int(r) for r in args.rows.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="dkmeans-scaling-") as tmp:
        folder = Path(args.folder or tmp)
        t = time.perf_counter()
        stores = {}
        for n in sizes:
            stores[n] = folder / f"blobs-{n}x{args.features}.zarr"
            if not stores[n].exists():
                X, _, _ = make_blobs(n, args.features, args.k, cluster_std=7.0,
                                     chunks=args.chunk, random_state=0)  # fmt: skip
                with dask.config.set(scheduler="threads"):
                    write_zarr(X, stores[n])
        workload = {"rows": sizes, "features": args.features, "k": args.k,
                    "chunk_rows": args.chunk, "workers": workers,
                    "iterations": args.iterations}  # fmt: skip
        print_line(system_line(workload, time.perf_counter() - t))
        per_pass = {}
        for w in workers:
            with (
                LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                             dashboard_address=":0") as cluster,
                Client(cluster),
            ):  # fmt: skip
                for n in sizes:
                    t = time.perf_counter()
                    km = KMeans(args.k, random_state=0, tol=0.0, max_iter=args.iterations,
                                persist=True).fit(str(stores[n]))  # fmt: skip
                    per_pass[(n, w)] = km.iteration_seconds_
                    print_line({"system": f"dkmeans-{w}-worker", "rows": n,
                                "seconds": time.perf_counter() - t, "iterations": km.n_iter_,
                                "data_passes": km.n_passes_,
                                "seconds_per_lloyd_pass": km.iteration_seconds_})  # fmt: skip
        lo, hi = sizes[0], sizes[-1]
        summary = {"system": "summary"}
        for w in workers:
            summary[f"{w}_worker_{hi}_vs_{lo}"] = ratio(per_pass[(hi, w)], per_pass[(lo, w)])
        if len(workers) > 1:
            summary[f"speedup_{workers[-1]}_vs_{workers[0]}_workers_at_{hi}"] = ratio(
                per_pass[(hi, workers[0])], per_pass[(hi, workers[-1])]
            )
        summary["rows_ratio"] = hi / lo
        summary["targets_met"] = {
            "linear": all(
                per_pass[(hi, w)] <= 1.0625 * (hi / lo) * per_pass[(lo, w)] for w in workers
            )
        }
        print_line(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
