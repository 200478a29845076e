"""Out-of-core benchmark: k-means on a Zarr store several times larger than the workers'
total memory, on a LocalCluster with a hard memory limit per worker.

Prints JSON lines: the workload, the streaming read floor (one pass that only reads
and reduces each chunk), and two fits (passes, seconds, seconds per Lloyd pass and
their ratio to the read floor, the largest worker RSS seen against its limit, and
whether any worker was paused or restarted): ``dkmeans-streamed`` iterates on all rows
(``fit_sample=None``, ``--iterations`` Lloyd passes), ``dkmeans-streamed-sampled`` is the
default (a gathered sample fitted in memory, polished on all rows to convergence).

    python benchmarks/bench_out_of_core.py                       # 8 GiB store, 2 x 1 GiB workers
    python benchmarks/bench_out_of_core.py --rows 200000 --chunk 50000   # seconds
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _harness import blobs_store, print_line, ratio, system_line


def make_store(args) -> Path:
    return blobs_store(args, cluster_std=args.std, seed=args.seed)


class WorkerWatch:
    """Samples every worker's RSS and status in the background."""

    def __init__(self, client, every: float = 0.25):
        self.client, self.every = client, every
        self.max_rss = 0
        self.statuses: set[str] = set()
        self.addresses = set(client.scheduler_info()["workers"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        def rss():
            return psutil.Process().memory_info().rss

        def statuses(dask_scheduler):
            return [ws.status.name for ws in dask_scheduler.workers.values()]

        while not self._stop.is_set():
            try:
                self.max_rss = max(self.max_rss, *self.client.run(rss).values())
                self.statuses.update(self.client.run_on_scheduler(statuses))
            except Exception:  # a worker going away mid-sample: seen by `restarted`
                pass
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.restarted = set(self.client.scheduler_info()["workers"]) != self.addresses


def read_floor(store: str) -> float:
    """Seconds of one streaming pass that reads every chunk and reduces it to a number."""
    import dask.array as da

    X = da.from_zarr(store)
    t = time.perf_counter()
    X.map_blocks(lambda b: np.array([[b.sum(dtype=np.float64)]]), chunks=(1, 1),
                 dtype=np.float64).sum().compute()  # fmt: skip
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=33_554_432)  # x 64 float32 = 8 GiB
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--std", type=float, default=4.0)
    p.add_argument("--chunk", type=int, default=262_144)  # 64 MiB chunks
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="1GiB")
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", help="Zarr path (default: a temporary folder)")
    args = p.parse_args(argv)

    import tempfile

    import dask
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    from dkmeans import KMeans

    with tempfile.TemporaryDirectory(prefix="dkmeans-ooc-") as tmp:
        args.store = args.store or str(Path(tmp) / "ooc.zarr")
        t = time.perf_counter()
        with dask.config.set(scheduler="threads"):
            make_store(args)
        nbytes = args.rows * args.features * 4
        limit = parse_bytes(args.memory_limit)
        workload = {"rows": args.rows, "features": args.features, "k": args.k,
                    "chunk_rows": args.chunk, "store_gib": nbytes / 2**30,
                    "workers": args.workers, "memory_limit_gib": limit / 2**30,
                    "store_vs_worker_memory": nbytes / (limit * args.workers)}  # fmt: skip
        print_line(system_line(workload, time.perf_counter() - t))
        with (
            LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                         memory_limit=args.memory_limit, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            floor = min(read_floor(args.store) for _ in range(2))
            print_line({"system": "read-floor", "seconds": floor})
            fits = {}
            for label, kw in (
                # the Lloyd loop on all rows: seeding, `iterations` passes, labels
                ("dkmeans-streamed", {"fit_sample": None, "tol": 0.0,
                                      "max_iter": args.iterations}),
                # the defaults: gather a sample, fit it in memory, polish on all rows
                ("dkmeans-streamed-sampled", {}),
            ):  # fmt: skip
                with WorkerWatch(client) as watch:
                    t = time.perf_counter()
                    km = KMeans(args.k, random_state=args.seed, persist="auto",
                                **kw).fit(args.store)  # fmt: skip
                    seconds = time.perf_counter() - t
                per_pass = km.iteration_seconds_
                fits[label] = line = {
                    "system": label, "seconds": seconds, "data_passes": km.n_passes_,
                    "seeding_passes": km.n_seeding_passes_, "iterations": km.n_iter_,
                    "fit_sample_size": km.fit_sample_size_, "persisted": km.persisted_,
                    "seconds_per_lloyd_pass": per_pass,
                    "lloyd_pass_vs_read_floor": ratio(per_pass, floor),
                    "seconds_vs_read_floor": ratio(seconds, floor),
                    "max_worker_rss_gib": watch.max_rss / 2**30,
                    "rss_vs_limit": watch.max_rss / limit,
                    "worker_statuses": sorted(watch.statuses),
                    "worker_restarted": watch.restarted, "inertia": km.inertia_,
                }  # fmt: skip
                print_line(line)
            full, sampled = fits["dkmeans-streamed"], fits["dkmeans-streamed-sampled"]
            per_pass, seconds = full["seconds_per_lloyd_pass"], sampled["seconds"]
            max_rss = max(full["max_worker_rss_gib"], sampled["max_worker_rss_gib"]) * 2**30
            statuses = set(full["worker_statuses"]) | set(sampled["worker_statuses"])
            restarted = full["worker_restarted"] or sampled["worker_restarted"]
            print_line({
                "system": "summary", "store_vs_worker_memory": workload["store_vs_worker_memory"],
                "lloyd_pass_vs_read_floor": ratio(per_pass, floor),
                "sampled_reads": sampled["data_passes"],
                "sampled_seconds_vs_read_floor": ratio(seconds, floor),
                "sampled_inertia_vs_full": ratio(sampled["inertia"], full["inertia"]),
                "targets_met": {
                    "store_at_least_4x_memory": workload["store_vs_worker_memory"] >= 4,
                    "no_pause_or_restart": statuses <= {"running"} and not restarted,
                    "under_limit": max_rss < limit,
                    "lloyd_pass_le_1.25x_read": per_pass <= 1.25 * floor,
                },
            })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
