"""Job benchmark: reads of the store, wall time, chosen k and inertia of the archetype job.

The cost of a job on a store it cannot keep in memory is reads × store size.  Each
system runs the whole job (:class:`dkmeans.pipeline.Job`: scale, PCA, choose k, fit,
write the labels, profile the archetypes) in a fresh process, and counts the chunk
reads of the records array with a wrapper around zarr's ``LocalStore``:

- ``job-in-memory``: the records kept in memory, k swept on all rows
  (``persist=True, fit_sample=None``): the reference.
- ``job-streamed``: the records streamed (``persist=False``), the defaults: gather
  pass, sweep and fit on the sample, polish on all rows, final pass.
- ``job-streamed-full``: streamed with ``fit_sample=None``: every seeding and Lloyd
  pass of the sweep reads the store (the strategy before the sample).
- ``job-streamed-before``: the streamed job of another dkmeans checkout
  (``--before PATH``, e.g. a ``git worktree`` of the previous release), same store.
- ``inertia-seeds``: for 5 seeds, the streamed job at the planted k against an
  in-memory full-data ``KMeans(k, init="k-means||", n_init=1)`` on the same scaled,
  reduced rows; the ratio of inertias, whose median is held to 1.001.

Workloads: ``--dataset communities`` (the demo's synthetic communities) or ``blobs``
(overlapping Gaussian blobs, σ = 7, 16 centres, as bench_select_k).

    python benchmarks/bench_job.py --dataset communities --rows 200000 --chunk 25000
    python benchmarks/bench_job.py --dataset blobs --before /tmp/dkmeans-before
    python benchmarks/bench_job.py --dataset communities --rows 4000 --chunk 1000 \\
        --k-max 6 --seeds 2   # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import peak_rss_mb, print_line, ratio, system_line

if os.environ.get("DKMEANS_BENCH_CHECKOUT"):  # job-streamed-before: that checkout's dkmeans
    sys.path.insert(0, os.environ["DKMEANS_BENCH_CHECKOUT"])
    sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]

SYSTEMS = ("job-in-memory", "job-streamed", "job-streamed-full", "inertia-seeds")
PLANTED = {"communities": 5, "blobs": 16}


def make_store(args) -> Path:
    """The records as ``STORE/features`` in a Zarr group, with feature names."""
    path = Path(args.store)
    if path.exists():
        return path
    if args.dataset == "communities":
        from dkmeans.datasets import write_communities

        return write_communities(path, args.rows, chunks=args.chunk, random_state=args.seed)
    import zarr
    from dkmeans.datasets import make_blobs

    X, _, _ = make_blobs(args.rows, args.features, PLANTED["blobs"], cluster_std=7.0,
                         chunks=args.chunk, random_state=args.seed)  # fmt: skip
    X.to_zarr(str(path), component="features")
    names = [f"x{i}" for i in range(args.features)]
    zarr.open_array(str(path / "features"), mode="r+").attrs["feature_names"] = names
    return path


def count_chunk_reads(array: str) -> list:
    """Count chunk reads of ``array`` through every LocalStore of this process."""
    from zarr.storage import LocalStore

    reads: list = []
    get = LocalStore.get

    async def counted(self, key, prototype=None, byte_range=None):
        if key.startswith(f"{array}/") and key.rsplit("/", 1)[-1].isdigit():
            reads.append(key)  # list.append is atomic: tasks read from many threads
        return await get(self, key, prototype, byte_range)

    LocalStore.get = counted
    return reads


def _job(args, **kw):
    from dkmeans.pipeline import Job

    ks = [args.k_min, args.k_max]
    return Job(store=args.store, k_range=ks, random_state=args.seed, overwrite=True, **kw)


def run_system(system: str, args) -> dict:
    import dask
    import zarr
    from dkmeans.pipeline import run

    n_chunks = zarr.open_array(str(Path(args.store) / "features"), mode="r").nchunks
    reads = count_chunk_reads("features")
    out = {"system": system}
    with dask.config.set(scheduler="threads"):
        if system == "inertia-seeds":
            return out | _inertia_seeds(args, reads, n_chunks)
        kw = {"job-in-memory": {"persist": True, "fit_sample": None},
              "job-streamed": {"persist": False},
              "job-streamed-full": {"persist": False, "fit_sample": None},
              "job-streamed-before": {"persist": False}}[system]  # fmt: skip
        t = time.perf_counter()
        result = run(_job(args, **kw))
        seconds = time.perf_counter() - t
    km = result.kmeans
    return out | {
        "seconds": seconds, "reads": len(reads) / n_chunks, "best_k": int(km.n_clusters_),
        "inertia": float(km.inertia_), "polish_passes": int(km.n_iter_),
        "step_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip


def _inertia_seeds(args, reads: list, n_chunks: int) -> dict:
    """Per seed: the streamed job at the planted k, and an in-memory full-data fit."""
    import dask.array as da
    from dkmeans.pipeline import run

    from dkmeans import KMeans

    k = PLANTED[args.dataset]
    X = da.from_zarr(str(Path(args.store) / "features")).compute()
    ratios, job_reads = [], []
    for seed in range(args.seeds):
        before = len(reads)
        job = _job(args, k=k, persist=False, n_init=1, write_labels=False)
        job.random_state = seed
        result = run(job)
        job_reads.append((len(reads) - before) / n_chunks)
        Z = X
        for _, step in result.model.steps[:-1]:
            Z = step.transform(Z)
        ref = KMeans(k, n_init=1, random_state=seed, fit_sample=None).fit(Z)
        ratios.append(result.kmeans.inertia_ / ref.inertia_)
    return {"k": k, "seeds": args.seeds, "inertia_vs_full_fit": ratios,
            "median_ratio": float(np.median(ratios)), "reads": job_reads}  # fmt: skip


def summary(r: dict) -> dict:
    mem, new = r.get("job-in-memory", {}), r.get("job-streamed", {})
    full, before = r.get("job-streamed-full", {}), r.get("job-streamed-before", {})
    seeds = r.get("inertia-seeds", {})
    out = {
        "system": "summary",
        "reads": {name: r[name].get("reads") for name in r},
        "streamed_seconds_vs_full_strategy": ratio(new.get("seconds"), full.get("seconds")),
        "streamed_seconds_vs_before": ratio(new.get("seconds"), before.get("seconds")),
        "streamed_inertia_vs_in_memory": ratio(new.get("inertia"), mem.get("inertia")),
        "median_inertia_vs_full_fit": seeds.get("median_ratio"),
    }
    out["targets_met"] = {
        "streamed_reads_le_4": new.get("reads") is not None and new["reads"] <= 4,
        "in_memory_reads_le_2": mem.get("reads") is not None and mem["reads"] <= 2,
        "same_k_as_in_memory": new.get("best_k") is not None
        and new.get("best_k") == mem.get("best_k"),
        "median_inertia_le_1.001": seeds.get("median_ratio") is not None
        and seeds["median_ratio"] <= 1.001,
    }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(PLANTED), default="communities")
    p.add_argument("--rows", type=int, help="default: 200,000 communities, 4,000,000 blobs")
    p.add_argument("--features", type=int, default=32, help="blobs only")
    p.add_argument("--chunk", type=int, help="default: 25,000 communities, 250,000 blobs")
    p.add_argument("--k-min", type=int, default=2)
    p.add_argument("--k-max", type=int, help="default: 8 communities, 20 blobs")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--before", help="a dkmeans checkout to run job-streamed-before with")
    p.add_argument("--store", help="Zarr path (default: a temporary folder)")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    blobs = args.dataset == "blobs"
    args.rows = args.rows or (4_000_000 if blobs else 200_000)
    args.chunk = args.chunk or (250_000 if blobs else 25_000)
    args.k_max = args.k_max or (20 if blobs else 8)
    if args.one:
        print_line(run_system(args.one, args))
        return 0
    systems = args.systems.split(",") + (["job-streamed-before"] if args.before else [])
    base = ["--dataset", args.dataset, "--rows", str(args.rows), "--features",
            str(args.features), "--chunk", str(args.chunk), "--k-min", str(args.k_min),
            "--k-max", str(args.k_max), "--seeds", str(args.seeds),
            "--seed", str(args.seed)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dkmeans-bench-") as tmp:
        args.store = args.store or str(Path(tmp) / f"{args.dataset}.zarr")
        t = time.perf_counter()
        make_store(args)
        workload = {"dataset": args.dataset, "rows": args.rows, "chunk_rows": args.chunk,
                    "k_range": [args.k_min, args.k_max]}  # fmt: skip
        print_line(system_line(workload, time.perf_counter() - t))
        results = {}
        for system in systems:
            env = dict(os.environ)
            if system == "job-streamed-before":  # the other checkout's dkmeans
                env["DKMEANS_BENCH_CHECKOUT"] = str(Path(args.before).resolve())
            cmd = [sys.executable, __file__, *base, "--store", args.store, "--one", system]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode:
                res = {"system": system, "error": proc.stderr.strip().splitlines()[-1:]}
            else:
                res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[system] = res
            print_line(res)
        print_line(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
