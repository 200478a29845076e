"""Object-store benchmark: read throughput of a Zarr store from a local S3-protocol server
(moto_server, started here on 127.0.0.1) through zarr's FsspecStore (s3fs) and through
its ObjectStore (obstore, when installed), against the same store on local disk; and
the archetype job's wall time on the S3 store against the same store on disk.

Prints JSON lines.

    python benchmarks/bench_object_store.py                      # 2,000,000 x 16 float32
    python benchmarks/bench_object_store.py --rows 20000 --chunk 5000 --no-job   # seconds
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _harness import print_line, ratio, system_line


def start_server():
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable),
                                                       "moto_server")  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def read_seconds(arr) -> float:
    """Best of two full reads (every chunk fetched and decoded), threaded."""
    import dask

    from dkmeans.io import from_zarr

    X = from_zarr(arr)
    best = np.inf
    for _ in range(2):
        t = time.perf_counter()
        with dask.config.set(scheduler="threads"):
            X.sum(axis=0).compute()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--chunk", type=int, default=125_000)
    p.add_argument("--no-job", action="store_true", help="skip the job timings")
    args = p.parse_args(argv)

    import boto3
    import zarr
    from dkmeans.datasets import write_communities

    proc, endpoint = start_server()
    try:
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                     aws_secret_access_key="bench", region_name="us-east-1").create_bucket(
            Bucket="bench"
        )  # fmt: skip
        client = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        options = {"key": "bench", "secret": "bench", "client_kwargs": client}
        X = np.random.default_rng(0).normal(size=(args.rows, args.features)).astype("float32")
        nbytes = X.nbytes
        with tempfile.TemporaryDirectory(prefix="dkmeans-os-") as tmp:
            t = time.perf_counter()
            layout = {"shape": X.shape, "chunks": (args.chunk, args.features), "dtype": X.dtype}
            zarr.create_array(f"{tmp}/x.zarr", **layout)[:] = X
            zarr.create_array("s3://bench/x.zarr", storage_options=options, **layout)[:] = X
            workload = {"rows": args.rows, "features": args.features, "chunk_rows": args.chunk,
                        "mib": nbytes / 2**20}  # fmt: skip
            print_line(system_line(workload, time.perf_counter() - t))
            lines = {"local": read_seconds(zarr.open_array(f"{tmp}/x.zarr", mode="r"))}
            fsspec_arr = zarr.open_array("s3://bench/x.zarr", mode="r", storage_options=options)
            lines["s3-fsspec"] = read_seconds(fsspec_arr)
            try:
                from obstore.store import S3Store
                from zarr.storage import ObjectStore

                store = S3Store("bench", endpoint=endpoint, access_key_id="bench",
                                secret_access_key="bench", region="us-east-1",
                                client_options={"allow_http": True})  # fmt: skip
                obj = zarr.open_array(ObjectStore(store, read_only=True), path="x.zarr", mode="r")
                lines["s3-obstore"] = read_seconds(obj)
            except ImportError as err:
                print_line({"system": "s3-obstore", "error": f"not installed ({err})"})
            for name, seconds in lines.items():
                print_line({"system": name, "seconds": seconds,
                            "mb_per_s": nbytes / seconds / 1e6,
                            "vs_local": ratio(seconds, lines["local"])})  # fmt: skip
            summary = {"system": "summary",
                       "obstore_vs_fsspec_seconds": ratio(lines.get("s3-obstore"),
                                                          lines["s3-fsspec"])}  # fmt: skip
            if not args.no_job:
                from dkmeans.pipeline import Job, run

                path = write_communities(Path(tmp) / "c.zarr", args.rows, chunks=args.chunk)
                fs_url = "s3://bench/c.zarr"
                import s3fs

                s3fs.S3FileSystem(**options).put(str(path), "bench/c.zarr", recursive=True)
                job = {"k": "auto", "k_range": [2, 8], "persist": False, "write_labels": True}
                t = time.perf_counter()
                run(Job(store=str(path), **job))
                disk = time.perf_counter() - t
                t = time.perf_counter()
                run(Job(store=fs_url, storage_options=options, **job))
                s3 = time.perf_counter() - t
                print_line({"system": "job", "disk_seconds": disk, "s3_seconds": s3,
                            "s3_vs_disk": ratio(s3, disk)})  # fmt: skip
                summary["job_s3_vs_disk"] = ratio(s3, disk)
            print_line(summary)
    finally:
        proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
