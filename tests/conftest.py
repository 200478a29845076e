import collections
import os

import dask
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, settings
from zarr.storage import LocalStore, WrapperStore

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=15, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _threaded_scheduler():
    """Tests run on the threaded scheduler unless they start a cluster themselves."""
    with dask.config.set(scheduler="threads"):
        yield


def blobs(n=3000, d=5, k=4, std=0.6, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    y = rng.integers(k, size=n)
    X = centers[y] + std * rng.standard_normal((n, d))
    return X.astype(dtype), y, centers


def close_pair(seed=1):
    """Issue 16's blobs: six planted centres in 2-D, two of them (300 rows each) 4.5
    apart, four small ones (40 rows) 12 away; unit spread.  The silhouette prefers 5
    (the pair merged), the elbow 6 (inertia drops about 3× from 5 to 6, then flat)."""
    from sklearn.datasets import make_blobs

    gap, far = 4.5, 12.0
    centers = np.array([[0, 0], [gap, 0], [gap / 2, far], [gap / 2, -far], [-far, 0],
                        [gap + far, 0]])  # fmt: skip
    X, y = make_blobs([300, 300, 40, 40, 40, 40], centers=centers, cluster_std=1.0,
                      random_state=seed)  # fmt: skip
    return X, y


class CountingStore(WrapperStore):
    """Counts chunk reads of a Zarr store, independently of the code under test."""

    def __init__(self, store, counter=None):
        super().__init__(store)
        self.counter = collections.Counter() if counter is None else counter

    def _with_store(self, store):
        return type(self)(store, self.counter)

    async def get(self, key, prototype, byte_range=None):
        if key.split("/")[-1].isdigit() or "/c/" in f"/{key}":
            self.counter[key] += 1
        return await self._store.get(key, prototype, byte_range)

    @property
    def root(self):  # where labels are written beside the records
        return self._store.root

    @property
    def chunk_reads(self):
        return sum(self.counter.values())

    def reads_of(self, array: str) -> int:
        """Chunk reads of one array of a group."""
        return sum(n for key, n in self.counter.items() if key.startswith(f"{array}/"))


def write_store(path, X, chunk_rows: int):
    """X as a Zarr array at ``path`` in row chunks of ``chunk_rows``; returns the path."""
    arr = zarr.create_array(str(path), shape=X.shape, chunks=(chunk_rows, X.shape[1]),
                            dtype=X.dtype)  # fmt: skip
    arr[:] = X
    return path


@pytest.fixture
def zarr_blobs(tmp_path):
    """A small float32 blobs store with 8 row chunks; returns (path, X, y)."""
    X, y, _ = blobs(n=4000, d=6, k=5, std=0.8, seed=3, dtype=np.float32)
    return write_store(tmp_path / "blobs.zarr", X, 500), X, y


def counting_array(path):
    store = CountingStore(LocalStore(str(path), read_only=True))
    return zarr.open_array(store=store, mode="r"), store


# --------------------------------------------------------------------------- object storage

SECRET = "s3cr3t-never-printed-0123456789"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server (moto_server) on 127.0.0.1, once per test run."""
    yield from _moto_server({})


@pytest.fixture(scope="session")
def s3_server_with_auth():
    """A second server that checks credentials (moto's IAM) after its first 5 requests;
    yields ``(endpoint, storage_options of a user allowed everything, bucket)``."""
    import json

    import boto3

    for endpoint in _moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "5"}):
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1",
              "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}  # fmt: skip
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="dkmeans")
        allow = {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}  # fmt: skip
        arn = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps(allow))["Policy"]["Arn"]
        iam.attach_user_policy(UserName="dkmeans", PolicyArn=arn)
        key = iam.create_access_key(UserName="dkmeans")["AccessKey"]
        kw |= {"aws_access_key_id": key["AccessKeyId"],
               "aws_secret_access_key": key["SecretAccessKey"]}  # fmt: skip
        boto3.client("s3", **kw).create_bucket(Bucket="dkmeans-auth")
        client = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        options = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"],
                   "client_kwargs": client}  # fmt: skip
        yield endpoint, options, "dkmeans-auth"


def _moto_server(env: dict):
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable),
                                                       "moto_server")  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **env})  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server, request):
    """A fresh bucket on the local server: ``(bucket, storage_options)``."""
    import re
    import uuid

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing",
                 aws_secret_access_key=SECRET, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )  # fmt: skip
    client = {"endpoint_url": s3_server, "region_name": "us-east-1"}
    options = {"key": "testing", "secret": SECRET, "client_kwargs": client}
    return bucket, options


def write_s3_group(url: str, options: dict, X, chunk_rows: int, names=None):
    """X as ``URL/features`` in a Zarr group on the object store (with feature names)."""
    group = zarr.open_group(url, mode="w", storage_options=options)
    arr = group.create_array("features", shape=X.shape, chunks=(chunk_rows, X.shape[1]),
                             dtype=X.dtype, dimension_names=("sample", "feature"))  # fmt: skip
    arr[:] = X
    arr.attrs["feature_names"] = names or [f"x{i}" for i in range(X.shape[1])]
    return f"{url}/features"
