"""select_k benchmark: the lockstep sweep against one fit per k, and scikit-learn.

Same workload as bench_fit (Gaussian blobs in a Zarr store).  Systems:

- ``dkmeans-lockstep``: ``select_k(store, k_range)`` streamed from the store
  (``persist=False``), every k fitted together and scored (silhouette on a
  10,000-row sample, Davies-Bouldin, Calinski-Harabasz).
- ``dkmeans-per-k``: one streamed ``KMeans(k)`` fit per k (data passes summed;
  the longest single fit is what the lockstep sweep is held to).  The summary
  checks that the sweep's centres for every k are bit-identical to these fits.
  ``--persist`` keeps the data in memory in both (same passes, less time: for
  repeating the pass comparison over several seeds).
- ``dkmeans-lockstep-persisted``: the sweep with the data kept in memory.
- ``sklearn-per-k``: scikit-learn in RAM, one KMeans per k plus its metrics
  (silhouette on the same sample size, Davies-Bouldin, Calinski-Harabasz).

    python benchmarks/bench_select_k.py --store /tmp/blobs4m.zarr
    python benchmarks/bench_select_k.py --rows 20000 --chunk 5000 --k-max 6   # seconds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np
from _harness import peak_rss_mb, ratio, run_benchmark
from bench_fit import make_store

SYSTEMS = ("dkmeans-lockstep", "dkmeans-per-k", "dkmeans-lockstep-persisted", "sklearn-per-k")


def _digest(centers) -> str:
    return hashlib.sha1(np.ascontiguousarray(centers).tobytes()).hexdigest()[:12]


def run_system(system: str, args) -> dict:
    import dask
    import zarr

    ks = list(range(args.k_min, args.k_max + 1))
    out = {"system": system, "k_range": [ks[0], ks[-1]]}
    if system.startswith("dkmeans-lockstep"):
        from dkmeans import select_k

        persist = system.endswith("persisted") or args.persist
        with dask.config.set(scheduler="threads"):
            t = time.perf_counter()
            sel = select_k(args.store, ks, persist=persist, random_state=args.seed,
                           fit_sample=None)  # the lockstep sweep on all rows  # fmt: skip
            out["seconds"] = time.perf_counter() - t
        out |= {"data_passes": sel.n_passes, "best_k": sel.best_k,
                "longest_iterations": int(sel.table["iterations"].max()),
                "centers_digest": [_digest(sel.centers[k]) for k in ks],
                "table": json.loads(sel.table.to_json(orient="records"))}  # fmt: skip
    elif system == "dkmeans-per-k":
        from dkmeans import KMeans

        passes, digests, seconds = [], [], 0.0
        with dask.config.set(scheduler="threads"):
            for k in ks:
                t = time.perf_counter()
                km = KMeans(k, persist=args.persist, random_state=args.seed,
                            fit_sample=None).fit(args.store)  # fmt: skip
                seconds += time.perf_counter() - t
                passes.append(km.n_passes_)
                digests.append(_digest(km.cluster_centers_))
        out |= {"seconds": seconds, "data_passes": sum(passes), "centers_digest": digests,
                "longest_fit_passes": max(passes), "passes_per_k": passes}  # fmt: skip
    elif system == "sklearn-per-k":
        from sklearn.cluster import KMeans
        from sklearn.metrics import (
            calinski_harabasz_score,
            davies_bouldin_score,
            silhouette_score,
        )

        X = zarr.open_array(args.store, mode="r")[:]
        t = time.perf_counter()
        scores = []
        for k in ks:
            km = KMeans(k, n_init=1, random_state=args.seed).fit(X)
            scores.append(silhouette_score(X, km.labels_, sample_size=10_000, random_state=0))
            davies_bouldin_score(X, km.labels_)
            calinski_harabasz_score(X, km.labels_)
        out |= {"seconds": time.perf_counter() - t, "best_k": ks[int(np.argmax(scores))]}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def summary(r: dict) -> dict:
    lock, per_k = r.get("dkmeans-lockstep", {}), r.get("dkmeans-per-k", {})
    out = {
        "system": "summary",
        "lockstep_passes": lock.get("data_passes"),
        "longest_single_fit_passes": per_k.get("longest_fit_passes"),
        "per_k_passes": per_k.get("data_passes"),
        "passes_vs_longest_fit": ratio(lock.get("data_passes"), per_k.get("longest_fit_passes")),
        "seconds_vs_per_k": ratio(lock.get("seconds"), per_k.get("seconds")),
        "persisted_seconds_vs_sklearn": ratio(
            r.get("dkmeans-lockstep-persisted", {}).get("seconds"),
            r.get("sklearn-per-k", {}).get("seconds"),
        ),
    }
    digests = lock.get("centers_digest")
    out["same_models_as_per_k"] = digests is not None and digests == per_k.get("centers_digest")
    target = out["passes_vs_longest_fit"]
    out["targets_met"] = {"passes_vs_longest_fit": target is not None and target <= 1.5}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--k", type=int, default=16, help="blobs in the generated store")
    p.add_argument("--k-min", type=int, default=2)
    p.add_argument("--k-max", type=int, default=16)
    p.add_argument("--std", type=float, default=7.0)
    p.add_argument("--chunk", type=int, default=250_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--persist",
        action="store_true",
        help="keep the data in memory in every dkmeans system (same passes, less time)",
    )
    p.add_argument("--store", help="Zarr path (default: a temporary folder)")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workload = {"rows": args.rows, "features": args.features, "blobs": args.k,
                "k_range": [args.k_min, args.k_max], "chunk_rows": args.chunk,
                "seed": args.seed, "persist": args.persist}  # fmt: skip
    base = ["--k-min", str(args.k_min), "--k-max", str(args.k_max), "--seed", str(args.seed)]
    base += ["--persist"] if args.persist else []
    return run_benchmark(
        args, script=__file__, run_system=run_system, make_store=make_store,
        store_name=f"blobs-{args.rows}x{args.features}.zarr", workload=workload, base=base,
        summary=summary,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
