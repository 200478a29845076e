"""Large-k benchmark: k = 1,024 on 1M x 64 float32 (k-means|| seeding, Lloyd passes).

Prints JSON lines: dkmeans (seeding seconds, candidates' recluster bounded in memory,
seconds per Lloyd pass, peak RSS) and scikit-learn in RAM with the same iteration
budget (k-means++ seeding), each in its own process.

    python benchmarks/bench_large_k.py
    python benchmarks/bench_large_k.py --rows 20000 --k 64 --chunk 5000   # seconds
"""

from __future__ import annotations

import logging
import sys
import time

from _harness import peak_rss_mb, ratio, run_blobs_benchmark


class _Seconds(logging.Handler):
    """Picks the k-means|| wall time out of the dkmeans log."""

    seeding = None

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("k-means||:"):
            _Seconds.seeding = float(msg.rsplit(" in ", 1)[1].rstrip("s"))


def run_system(system: str, args) -> dict:
    import dask
    import zarr

    out = {"system": system}
    if system == "dkmeans":
        from dkmeans import KMeans

        log = logging.getLogger("dkmeans")
        log.addHandler(_Seconds())
        log.setLevel(logging.INFO)
        with dask.config.set(scheduler="threads"):
            t = time.perf_counter()
            km = KMeans(args.k, random_state=0, tol=0.0, max_iter=args.iterations,
                        persist=True).fit(args.store)  # fmt: skip
        out |= {"seconds": time.perf_counter() - t, "seeding_seconds": _Seconds.seeding,
                "seeding_passes": km.n_seeding_passes_, "data_passes": km.n_passes_,
                "seconds_per_lloyd_pass": km.iteration_seconds_, "inertia": km.inertia_,
                "empty_clusters": int((km.cluster_sizes_ == 0).sum())}  # fmt: skip
    else:
        from sklearn.cluster import KMeans

        X = zarr.open_array(args.store, mode="r")[:]
        t = time.perf_counter()
        km = KMeans(args.k, n_init=1, max_iter=args.iterations, tol=0.0, random_state=0).fit(X)
        out |= {"seconds": time.perf_counter() - t, "inertia": float(km.inertia_),
                "iterations": int(km.n_iter_)}  # fmt: skip
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def summary(r: dict) -> dict:
    ours, sk = r.get("dkmeans", {}), r.get("sklearn", {})
    return {
        "system": "summary",
        "seconds_vs_sklearn": ratio(ours.get("seconds"), sk.get("seconds")),
        "inertia_vs_sklearn": ratio(ours.get("inertia"), sk.get("inertia")),
        "peak_rss_vs_sklearn": ratio(ours.get("peak_rss_mb"), sk.get("peak_rss_mb")),
    }


def main(argv=None):
    return run_blobs_benchmark(
        argv, doc=__doc__, script=__file__, run_system=run_system, summary=summary,
        store_name="large-k.zarr", systems="dkmeans,sklearn",
        rows=1_000_000, features=64, k=1024, chunk=125_000, iterations=5,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
