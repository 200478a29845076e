"""PCA and StandardScaler benchmark: dkmeans against scikit-learn (RAM) and dask-ml (same store).

Workload: n × d float32 rows of a low-rank signal (rank d/8, decaying spectrum) plus
noise, offset far from the origin, in a Zarr store with row chunks.  Every system
runs in its own process; chunk reads are counted by a wrapper around the store, so
"data_passes" is measured, not declared.

    python benchmarks/bench_pca.py                       # 4,000,000 x 128
    python benchmarks/bench_pca.py --rows 20000 --chunk 5000   # seconds
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np
from _harness import peak_rss_mb, ratio, run_benchmark

SYSTEMS = (
    "floor-read", "dkmeans-pca", "dkmeans-pca-tsqr", "dkmeans-scaler", "sklearn-pca",
    "sklearn-scaler", "dask-ml-pca", "dask-ml-scaler",
)  # fmt: skip


def _block(block_id, *, sizes, basis, seed, d):
    i = block_id[0]
    rng = np.random.default_rng([seed, i])
    z = rng.standard_normal((sizes[i], basis.shape[0]))
    x = z @ basis + 0.1 * rng.standard_normal((sizes[i], d)) + 1000.0
    return x.astype(np.float32)


def make_store(args) -> Path:
    import dask.array as da
    from dkmeans.datasets import write_zarr

    path = Path(args.store)
    if not path.exists():
        d, r = args.features, max(1, args.features // 8)
        rng = np.random.default_rng(args.seed)
        basis = rng.standard_normal((r, d)) * np.geomspace(10, 1, r)[:, None]
        rows = da.core.normalize_chunks((args.chunk,), (args.rows,))[0]
        X = da.map_blocks(
            _block, chunks=(rows, (d,)), dtype=np.float32, sizes=rows, basis=basis,
            seed=args.seed, d=d,
        )  # fmt: skip
        write_zarr(X, path)
    return path


def _counting_array(path):
    """The store's array and its chunk-read counter (independent of the code measured)."""
    import zarr
    from zarr.storage import LocalStore, WrapperStore

    class CountingStore(WrapperStore):
        def __init__(self, store, counter):
            super().__init__(store)
            self.counter = counter

        def _with_store(self, store):
            return type(self)(store, self.counter)

        async def get(self, key, prototype, byte_range=None):
            if "/c/" in f"/{key}":
                self.counter[key] += 1
            return await self._store.get(key, prototype, byte_range)

    counter = collections.Counter()
    store = CountingStore(LocalStore(path, read_only=True), counter)
    return zarr.open_array(store=store, mode="r"), counter


def run_system(system: str, args) -> dict:
    import dask
    import dask.array as da
    import zarr

    out = {"system": system}
    arr, counter = _counting_array(args.store)
    n_chunks = int(np.prod(arr.cdata_shape))
    nc = args.n_components
    with dask.config.set(scheduler="threads"):
        if system == "floor-read":
            times = []
            for _ in range(3):
                t = time.perf_counter()
                da.from_zarr(arr).sum(axis=0).compute()
                times.append(time.perf_counter() - t)
            out["seconds"] = min(times)
            counter.clear()
        elif system.startswith("dkmeans"):
            from dkmeans import PCA, StandardScaler

            if system == "dkmeans-scaler":
                est = StandardScaler()
            else:
                solver = "tsqr" if system.endswith("tsqr") else "auto"
                est = PCA(nc, svd_solver=solver)
            t = time.perf_counter()
            est.fit(arr)
            out["seconds"] = time.perf_counter() - t
            if system != "dkmeans-scaler":
                out["solver"] = est.svd_solver_
                out["explained_variance_ratio_head"] = est.explained_variance_ratio_[:4].tolist()
        elif system.startswith("sklearn"):
            from sklearn.decomposition import PCA
            from sklearn.preprocessing import StandardScaler

            X = zarr.open_array(args.store, mode="r")[:]
            est = StandardScaler() if system == "sklearn-scaler" else PCA(nc)
            t = time.perf_counter()
            est.fit(X)
            out["seconds"] = time.perf_counter() - t
            counter.clear()
            if system == "sklearn-pca":
                out["explained_variance_ratio_head"] = est.explained_variance_ratio_[:4].tolist()
        elif system.startswith("dask-ml"):
            try:
                from dask_ml.decomposition import PCA
                from dask_ml.preprocessing import StandardScaler
            except ImportError:
                return {"system": system, "skipped": "dask-ml is not installed"}
            X = da.from_zarr(arr)
            est = StandardScaler() if system == "dask-ml-scaler" else PCA(nc)
            t = time.perf_counter()
            est.fit(X)
            out["seconds"] = time.perf_counter() - t
            if system == "dask-ml-pca":
                out["explained_variance_ratio_head"] = est.explained_variance_ratio_[:4].tolist()
    if counter:
        out["data_passes"] = sum(counter.values()) / n_chunks
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def summary(r: dict) -> dict:
    def sec(system):
        return r.get(system, {}).get("seconds")

    out = {
        "system": "summary",
        "pca_passes": r.get("dkmeans-pca", {}).get("data_passes"),
        "tsqr_passes": r.get("dkmeans-pca-tsqr", {}).get("data_passes"),
        "scaler_passes": r.get("dkmeans-scaler", {}).get("data_passes"),
        "pca_vs_read_floor": ratio(sec("dkmeans-pca"), sec("floor-read")),
        "pca_vs_sklearn": ratio(sec("dkmeans-pca"), sec("sklearn-pca")),
        "dask_ml_pca_vs_dkmeans": ratio(sec("dask-ml-pca"), sec("dkmeans-pca")),
        "dask_ml_pca_vs_dkmeans_tsqr": ratio(sec("dask-ml-pca"), sec("dkmeans-pca-tsqr")),
        "scaler_vs_sklearn": ratio(sec("dkmeans-scaler"), sec("sklearn-scaler")),
        "dask_ml_scaler_vs_dkmeans": ratio(sec("dask-ml-scaler"), sec("dkmeans-scaler")),
    }
    passes = [out[k] for k in ("pca_passes", "tsqr_passes", "scaler_passes")]
    out["targets_met"] = {
        "at_most_2_passes": all(p is not None and p <= 2 for p in passes),
        "faster_than_dask_ml": all(
            (v or 0) > 1 for v in (out["dask_ml_pca_vs_dkmeans"], out["dask_ml_scaler_vs_dkmeans"])
        ),
    }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4_000_000)
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--n-components", type=int, default=None)
    p.add_argument("--chunk", type=int, default=125_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", help="Zarr path (default: a temporary folder)")
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    workload = {"rows": args.rows, "features": args.features, "chunk_rows": args.chunk,
                "n_components": args.n_components}  # fmt: skip
    base = ["--seed", str(args.seed)]
    if args.n_components is not None:
        base += ["--n-components", str(args.n_components)]
    return run_benchmark(
        args, script=__file__, run_system=run_system, make_store=make_store,
        store_name=f"lowrank-{args.rows}x{args.features}.zarr", workload=workload, base=base,
        summary=summary,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
