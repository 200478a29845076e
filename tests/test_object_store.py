"""Zarr on object storage, against a real S3-protocol server (moto_server) on 127.0.0.1:
URLs and storage_options everywhere a store is taken, one clear error per failure, and
credentials that never show."""

import logging
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
from dkmeans.pipeline import Job, run

import dkmeans
from dkmeans import KMeans

from .conftest import SECRET, blobs, write_s3_group


@pytest.fixture
def s3_store(s3_bucket):
    bucket, options = s3_bucket
    X, _, _ = blobs(n=6000, d=4, k=3, std=0.5, seed=1, dtype=np.float32)
    url = write_s3_group(f"s3://{bucket}/c.zarr", options, X, 1000)
    return url, options, X


def test_read_and_fit_a_store_on_s3_as_on_disk(s3_store, tmp_path):
    url, options, X = s3_store
    arr = dkmeans.open_zarr_array(url, storage_options=options)
    assert arr.shape == X.shape and type(arr.store).__name__ == "FsspecStore"
    dX = dkmeans.from_zarr(url, storage_options=options)
    np.testing.assert_array_equal(dX.compute(), X)
    remote = KMeans(3, random_state=0).fit(arr)
    local = KMeans(3, random_state=0).fit(da.from_array(X, chunks=(1000, 4)))  # same chunks
    np.testing.assert_array_equal(remote.cluster_centers_, local.cluster_centers_)
    assert list(remote.feature_names_in_) == ["x0", "x1", "x2", "x3"]
    info = dkmeans.io.store_info(url, storage_options=options)
    assert info["shape"] == X.shape and info["chunks"] == (1000, 4)


def test_a_retrain_on_s3_counts_the_churn_against_the_labels_it_replaces(s3_store, tmp_path):
    url, options, _ = s3_store
    run(Job(store=url, storage_options=options, k=3, pca=None, model_out=str(tmp_path / "m")))
    before = dkmeans.io.open_labels(url, storage_options=options)[:]
    result = run(Job(store=url, storage_options=options, k=4, pca=None, overwrite=True,
                     align_to=str(tmp_path / "m")))  # fmt: skip
    after = dkmeans.io.open_labels(url, storage_options=options)[:]
    assert result.changes.churn.n_changed == int(np.sum(before != after)) > 0
    assert result.changes.new == [3] and result.changes.notes == ()


def test_ambient_credentials_from_the_environment(s3_store, monkeypatch):
    url, options, X = s3_store
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["client_kwargs"]["endpoint_url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    km = KMeans(3, random_state=0).fit(url)  # a bare URL: the cloud's own variables
    local = KMeans(3, random_state=0).fit(da.from_array(X, chunks=(1000, 4)))
    np.testing.assert_array_equal(km.cluster_centers_, local.cluster_centers_)


def test_job_and_cli_read_s3_with_storage_options(s3_store, tmp_path, caplog):
    url, options, X = s3_store
    caplog.set_level(logging.DEBUG, logger="dkmeans")
    labels, model = str(tmp_path / "labels.zarr"), str(tmp_path / "m")
    result = run(Job(store=url, storage_options=options, k=3, pca=None, labels_out=labels,
                     model_out=model))  # fmt: skip
    np.testing.assert_array_equal(
        dkmeans.io.from_zarr(str(tmp_path / "labels.zarr" / "cluster")).compute(),
        result.model.predict(X),
    )
    endpoint = options["client_kwargs"]["endpoint_url"]
    cli = subprocess.run(
        [sys.executable, "-m", "dkmeans", "fit", url, "--k", "3", "--pca", "none", "-v",
         "--storage-option", "key=testing",
         "--storage-option", f"secret={SECRET}",
         "--storage-option", f"client_kwargs.endpoint_url={endpoint}",
         "--storage-option", "client_kwargs.region_name=us-east-1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "inertia" in cli.stdout
    # the CLI wrote the labels back beside the records on the object store
    written = dkmeans.io.open_labels(url, storage_options=options)[:]
    np.testing.assert_array_equal(written, result.model.predict(X))
    # the secret is in no output: model files, logs, the CLI's streams
    saved = "".join(p.read_text(errors="replace") for p in (tmp_path / "m").rglob("*.json"))
    for text in (saved, caplog.text, cli.stdout, cli.stderr):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("s3://no-such-bucket-dkmeans/c.zarr", "No bucket 'no-such-bucket-dkmeans'"),
        ("{bucket}/missing.zarr", "No Zarr store at s3://"),
    ],
)
def test_a_missing_bucket_or_key_is_one_clear_error(s3_bucket, where, match):
    bucket, options = s3_bucket
    url = where.format(bucket=f"s3://{bucket}")
    with pytest.raises(FileNotFoundError, match=match) as info:
        dkmeans.open_zarr_array(url, storage_options=options)
    assert SECRET not in str(info.value)
    cli = subprocess.run(
        [sys.executable, "-m", "dkmeans", "info", url, "--storage-option", "key=testing",
         "--storage-option", f"secret={SECRET}", "--storage-option",
         f"client_kwargs.endpoint_url={options['client_kwargs']['endpoint_url']}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("dkmeans: error:") and SECRET not in cli.stderr


def test_storage_options_are_for_urls_and_http_is_read_only(tmp_path):
    from dkmeans._engine.store import check_writable, public_url

    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        dkmeans.open_zarr_array(tmp_path, storage_options={"key": "x"})
    with pytest.raises(ValueError, match="read-only"):
        check_writable("https://example.org/c.zarr")
    assert public_url("https://user:pw@host.org/c.zarr") == "https://host.org/c.zarr"


def test_labels_written_back_on_s3_by_a_pointer_switch(s3_store):
    url, options, X = s3_store
    records = url.rsplit("/", 1)[0]
    first = run(Job(store=url, storage_options=options, k=3, pca=None))
    labels = dkmeans.io.open_labels(url, storage_options=options)
    np.testing.assert_array_equal(labels[:], first.model.predict(X))
    assert first.labels_path.startswith(f"{records}/cluster-")
    with pytest.raises(FileExistsError, match="overwrite"):
        run(Job(store=url, storage_options=options, k=4, pca=None))
    second = run(Job(store=url, storage_options=options, k=4, pca=None, overwrite=True))
    np.testing.assert_array_equal(dkmeans.io.open_labels(url, storage_options=options)[:],
                                  second.model.predict(X))  # fmt: skip
    import zarr

    own = zarr.open_group(records, mode="r+", storage_options=options)
    own.create_array("cluster-centres-v2", shape=(3,), dtype="f4")  # a user's, not a version
    third = run(Job(store=url, storage_options=options, k=2, pca=None, overwrite=True))
    group = zarr.open_group(records, mode="r", storage_options=options)
    assert "cluster-centres-v2" in group
    versions = sorted(k for k in group.array_keys()
                      if k.startswith("cluster-") and k != "cluster-centres-v2")  # fmt: skip
    # the new version and the one before it (for readers still on it); older ones gone
    assert [f"{records}/{v}" for v in versions] == sorted([second.labels_path,
                                                           third.labels_path])  # fmt: skip


def test_a_writer_killed_midway_leaves_the_old_labels(s3_store, tmp_path):
    import time

    import s3fs

    url, options, X = s3_store
    first = run(Job(store=url, storage_options=options, k=3, pca=None))
    old = dkmeans.io.open_labels(url, storage_options=options)[:]
    script = f"""
import time, dkmeans.io
from dkmeans.pipeline import Job, run
write = dkmeans.io.LabelsWriter.__call__
def slow(self, labels, start):
    write(self, labels, start)
    time.sleep(0.5)
dkmeans.io.LabelsWriter.__call__ = slow
run(Job(store={url!r}, storage_options={options!r}, k=4, pca=None, overwrite=True))
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    fs = s3fs.S3FileSystem(**options)
    records = url.rsplit("/", 1)[0].split("://", 1)[1]
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # until the new version has some chunks
            new = [p for p in fs.find(records) if "/cluster-" in p and "/c/" in p
                   and not p.startswith(first.labels_path.split("://", 1)[1])]  # fmt: skip
            if new:
                break
            assert proc.poll() is None, "the write ended before it could be killed"
            time.sleep(0.05)
            fs.invalidate_cache()
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    np.testing.assert_array_equal(dkmeans.io.open_labels(url, storage_options=options)[:], old)
    # the dead writer's lock and half-written version do not block the next write
    again = run(Job(store=url, storage_options=options, k=4, pca=None, overwrite=True))
    np.testing.assert_array_equal(dkmeans.io.open_labels(url, storage_options=options)[:],
                                  again.model.predict(X))  # fmt: skip


@pytest.mark.parametrize("mode", ["503", "drop"])
def test_transient_faults_are_retried_to_the_same_centres(s3_store, mode):
    from .faulty_proxy import FaultyProxy

    url, options, _ = s3_store
    clean = KMeans(3, random_state=0, persist=False, fit_sample=None, max_iter=5).fit(
        dkmeans.from_zarr(url, storage_options=options)
    )
    with FaultyProxy(options["client_kwargs"]["endpoint_url"], every=5, mode=mode) as proxy:
        faulty = {
            **options,
            "client_kwargs": {**options["client_kwargs"], "endpoint_url": proxy.url},
        }
        X_faulty = dkmeans.from_zarr(url, storage_options=faulty)
        km = KMeans(3, random_state=0, persist=False, fit_sample=None, max_iter=5).fit(X_faulty)
    assert proxy.faults > 5
    np.testing.assert_array_equal(km.cluster_centers_, clean.cluster_centers_)


def test_a_permanent_fault_names_the_store_and_the_chunk(s3_store):
    from dkmeans.io import ChunkReadError

    from .faulty_proxy import FaultyProxy

    url, options, _ = s3_store
    with FaultyProxy(options["client_kwargs"]["endpoint_url"], broken="features/c/3/0") as proxy:
        client = {**options["client_kwargs"], "endpoint_url": proxy.url}
        retries = {"retries": {"max_attempts": 2}}  # a short wait for the test
        broken = {**options, "config_kwargs": retries, "client_kwargs": client}
        X = dkmeans.from_zarr(url, storage_options=broken)
        with pytest.raises(
            ChunkReadError, match=r"chunk c/3/0 of s3://\S+/c\.zarr/features"
        ) as info:
            KMeans(3, random_state=0).fit(X)
    assert SECRET not in str(info.value)


def test_models_save_to_and_load_from_s3(s3_store):
    url, options, X = s3_store
    records = url.rsplit("/", 1)[0]
    model_url = f"{records}-models/week-1"
    result = run(Job(store=url, storage_options=options, k=3, pca=2, model_out=model_url,
                     write_labels=False))  # fmt: skip
    loaded = dkmeans.load(model_url, storage_options=options)
    np.testing.assert_array_equal(loaded.predict(X), result.model.predict(X))
    with pytest.raises(FileExistsError, match="overwrite"):
        dkmeans.save(loaded, model_url, storage_options=options)
    dkmeans.save(loaded, model_url, storage_options=options, overwrite=True)
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    root = model_url.split("://", 1)[1]
    assert sum(p.rsplit("/", 1)[-1].startswith("arrays") for p in fs.ls(root)) == 1
    again = run(Job(store=url, storage_options=options, k=3, pca=2, align_to=model_url,
                    write_labels=False, random_state=7))  # fmt: skip
    assert list(again.kmeans.cluster_ids_) == [0, 1, 2]
    assert SECRET not in fs.cat(f"{root}/model.json").decode()


def test_bad_credentials_are_one_clear_error(s3_server_with_auth, tmp_path):
    endpoint, options, bucket = s3_server_with_auth
    X, _, _ = blobs(n=200, d=2, k=2, seed=3, dtype=np.float32)
    url = write_s3_group(f"s3://{bucket}/c.zarr", options, X, 100)
    assert dkmeans.open_zarr_array(url, storage_options=options).shape == X.shape
    wrong = {**options, "secret": SECRET}
    with pytest.raises(PermissionError, match="refused or no credentials") as info:
        dkmeans.open_zarr_array(url, storage_options=wrong)
    assert SECRET not in str(info.value) and options["secret"] not in str(info.value)
    cli = subprocess.run(
        [sys.executable, "-m", "dkmeans", "info", url, "--storage-option",
         f"key={options['key']}", "--storage-option", f"secret={SECRET}",
         "--storage-option", f"client_kwargs.endpoint_url={endpoint}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert "refused or no credentials" in cli.stderr and SECRET not in cli.stderr


def test_the_secret_is_in_no_task_key_and_no_checkpoint(s3_store, tmp_path):
    url, options, _ = s3_store
    X = dkmeans.from_zarr(url, storage_options=options)
    assert all(SECRET not in str(key) for key in X.__dask_graph__())
    km = KMeans(3, random_state=0, persist=False, max_iter=3, checkpoint=tmp_path / "ck")
    km.fit(X)
    for path in (tmp_path / "ck").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()
    assert SECRET not in repr(km) and SECRET not in str(km.get_params())
