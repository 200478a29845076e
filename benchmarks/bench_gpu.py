"""GPU benchmark: the same KMeans fit on NumPy blocks and on CuPy blocks of one Zarr store.

Prints JSON lines: dkmeans on NumPy blocks (threaded scheduler), dkmeans on CuPy blocks
(``map_blocks(cupy.asarray)``, persisted in GPU memory), scikit-learn in RAM; each in
its own process, same seeds, same iteration budget.  Without CuPy or a GPU the CuPy
line says why and the others still run.

    python benchmarks/bench_gpu.py
    python benchmarks/bench_gpu.py --rows 20000 --k 8 --chunk 5000   # seconds
"""

from __future__ import annotations

import sys
import time

from _harness import peak_rss_mb, ratio, run_blobs_benchmark


def _fit(X, args):
    from dkmeans import KMeans

    t = time.perf_counter()
    km = KMeans(args.k, random_state=0, tol=0.0, max_iter=args.iterations, persist=True).fit(X)
    return km, time.perf_counter() - t


def run_system(system: str, args) -> dict:
    import dask
    import dask.array as da
    import zarr

    out = {"system": system}
    if system == "sklearn":
        from sklearn.cluster import KMeans

        X = zarr.open_array(args.store, mode="r")[:]
        t = time.perf_counter()
        km = KMeans(args.k, n_init=1, max_iter=args.iterations, tol=0.0, random_state=0).fit(X)
        out |= {"seconds": time.perf_counter() - t, "inertia": float(km.inertia_)}
    else:
        X = da.from_zarr(args.store)
        if system == "dkmeans-cupy":
            import cupy

            X = X.map_blocks(cupy.asarray, meta=cupy.empty((0, 0), dtype=X.dtype))
            out["device"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        with dask.config.set(scheduler="threads"):
            km, seconds = _fit(X, args)
        out |= {"seconds": seconds, "seconds_per_lloyd_pass": km.iteration_seconds_,
                "data_passes": km.n_passes_, "inertia": km.inertia_}  # fmt: skip
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def summary(r: dict) -> dict:
    cpu, gpu, sk = r.get("dkmeans-numpy", {}), r.get("dkmeans-cupy", {}), r.get("sklearn", {})
    return {
        "system": "summary",
        "cupy_vs_numpy_seconds": ratio(gpu.get("seconds"), cpu.get("seconds")),
        "cupy_vs_numpy_per_pass": ratio(
            gpu.get("seconds_per_lloyd_pass"), cpu.get("seconds_per_lloyd_pass")
        ),
        "cupy_vs_numpy_inertia": ratio(gpu.get("inertia"), cpu.get("inertia")),
        "numpy_vs_sklearn_seconds": ratio(cpu.get("seconds"), sk.get("seconds")),
        "gpu_ran": "seconds" in gpu,
    }


def main(argv=None):
    return run_blobs_benchmark(
        argv, doc=__doc__, script=__file__, run_system=run_system, summary=summary,
        store_name="gpu.zarr", systems="dkmeans-numpy,dkmeans-cupy,sklearn",
        rows=4_000_000, features=32, k=64, chunk=250_000, iterations=10,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
