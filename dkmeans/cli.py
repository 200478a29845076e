"""The ``dkmeans`` command line.  The CLI prints; the library logs."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import zarr

__all__ = ["main"]


class UserError(Exception):
    """An error the user can fix: printed as one line, exit code 2."""


def _demo(args) -> int:
    from distributed import Client, LocalCluster

    from .cluster import KMeans
    from .datasets import make_blobs, write_zarr

    with tempfile.TemporaryDirectory(prefix="dkmeans-demo-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        store = out / "blobs.zarr"
        X, _, _ = make_blobs(
            args.rows, args.features, args.k, cluster_std=args.std,
            chunks=max(1000, args.rows // 16), random_state=args.random_state,
        )  # fmt: skip
        t = time.perf_counter()
        write_zarr(X, store, overwrite=True)
        print(f"example store: {store} ({args.rows:,} x {args.features} float32, "
              f"{time.perf_counter() - t:.1f}s to write)")  # fmt: skip
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            print(f"dashboard: {client.dashboard_link}")
            t = time.perf_counter()
            km = KMeans(args.k, random_state=args.random_state, verbose=args.verbose).fit(
                str(store)
            )
            seconds = time.perf_counter() - t
            sizes = ", ".join(f"{int(s):,}" for s in km.cluster_sizes_)
        print(f"k: {args.k}")
        print(f"iterations: {km.n_iter_}")
        print(f"inertia: {km.inertia_:.6g}")
        print(f"data passes: {km.n_passes_} (k-means||: {km.n_seeding_passes_})")
        print(f"seconds: {seconds:.2f}")
        print(f"cluster sizes: {sizes}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="dkmeans", description="Out-of-core k-means on Zarr stores with Dask."
    )
    parser.add_argument("--version", action="version", version=f"dkmeans {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="generate an example Zarr store and cluster it")
    demo.add_argument("--rows", type=int, default=1_000_000)
    demo.add_argument("--features", type=int, default=16)
    demo.add_argument("--k", type=int, default=8)
    demo.add_argument("--std", type=float, default=2.0)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--random-state", type=int, default=0)
    demo.add_argument("--out", help="folder for the example store (default: temporary)")
    demo.add_argument("-v", "--verbose", action="count", default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``dkmeans`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "rows", 1) < 1 or getattr(args, "k", 1) < 1:
            raise UserError("--rows and --k must be at least 1")
        return args.func(args)
    except (UserError, ValueError, TypeError, KeyError, FileNotFoundError,
            FileExistsError, zarr.errors.BaseZarrError) as err:  # fmt: skip
        print(f"dkmeans: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
