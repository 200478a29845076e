"""Fits that survive a lost worker, a killed client process, and an interrupted write."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from dkmeans import KMeans

from .conftest import blobs, write_store


@pytest.fixture
def store(tmp_path):
    X, _, _ = blobs(n=40_000, d=8, k=12, std=4.0, seed=21, dtype=np.float32)
    return write_store(tmp_path / "x.zarr", X, 2500)


def _iteration(checkpoint) -> int:
    path = checkpoint / "dkmeans-checkpoint.npz"
    if not path.exists():
        return -1
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError):  # being replaced right now
        return -1
    return max(r["n_iter"] for r in meta["runs"])


def test_a_killed_fit_resumes_to_the_same_result(tmp_path, store):
    params = {"n_clusters": 12, "random_state": 3, "tol": 0.0, "max_iter": 30}
    checkpoint = tmp_path / "ckpt"
    script = textwrap.dedent(f"""
        import time, dask, dask.array as da
        from dkmeans import KMeans

        def slow(block):  # about 0.2 s a pass: time to kill it mid-fit
            time.sleep(0.012)
            return block

        X = da.from_zarr({str(store)!r}).map_blocks(slow, dtype="float32")
        with dask.config.set(scheduler="threads", num_workers=2):
            KMeans(**{params!r}, checkpoint={str(checkpoint)!r}).fit(X)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while _iteration(checkpoint) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, "the fit ended before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _iteration(checkpoint)
    resumed = KMeans(**params, checkpoint=checkpoint, resume=True).fit(str(store))
    straight = KMeans(**params).fit(str(store))
    assert 4 <= done < straight.n_iter_  # killed mid-fit
    np.testing.assert_array_equal(resumed.cluster_centers_, straight.cluster_centers_)
    assert resumed.n_iter_ == straight.n_iter_
    assert resumed.inertia_ == straight.inertia_
    # the resumed process read the data only for the iterations left (and the labels)
    assert resumed.n_passes_ == straight.n_iter_ - done + 1


def test_a_checkpoint_of_another_fit_is_refused(tmp_path, store):
    KMeans(4, random_state=0, max_iter=2, checkpoint=tmp_path / "c").fit(str(store))
    with pytest.raises(ValueError, match=r"another fit \(differs in \['n_clusters'\]\)"):
        KMeans(5, random_state=0, checkpoint=tmp_path / "c", resume=True).fit(str(store))
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        KMeans(5, resume=True).fit(str(store))


def test_select_k_resumes_too(tmp_path, store):
    from dkmeans import select_k

    kw = {"random_state": 1, "tol": 0.0, "max_iter": 12}
    select_k(str(store), range(2, 6), **kw | {"max_iter": 4}, checkpoint=tmp_path / "c")
    resumed = select_k(str(store), range(2, 6), **kw, checkpoint=tmp_path / "c", resume=True)
    straight = select_k(str(store), range(2, 6), **kw)
    for k in range(2, 6):
        np.testing.assert_array_equal(resumed.centers[k], straight.centers[k])


@pytest.mark.parametrize("persist, algorithm", [(False, "auto"), (True, "auto"), (True, "elkan")])
def test_a_worker_killed_mid_fit_changes_nothing(store, persist, algorithm):
    from distributed import Client, LocalCluster

    # streamed, the fit samples, fits the sample and polishes on all rows (fit_sample)
    params = {"n_clusters": 12, "random_state": 5, "tol": 0.0, "max_iter": 40, "persist": persist,
              "algorithm": algorithm}  # fmt: skip
    undisturbed = KMeans(**params).fit(str(store))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,  # fmt: skip
        Client(cluster) as client,
    ):
        result = {}

        def fit():
            try:
                result["km"] = KMeans(**params).fit(str(store))
            except BaseException as err:  # reported below
                result["error"] = err

        thread = threading.Thread(target=fit)
        thread.start()
        victim = sorted(client.scheduler_info()["workers"])[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        deadline = time.monotonic() + 60
        while (
            not client.run_on_scheduler(
                lambda dask_scheduler: any("lloyd-3" in str(k) for k in dask_scheduler.tasks)
            )
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert "km" not in result  # still fitting
        os.kill(pid, signal.SIGKILL)  # the nanny starts a fresh worker
        thread.join(timeout=300)
        assert victim not in client.scheduler_info()["workers"]
    assert "error" not in result, result.get("error")
    np.testing.assert_array_equal(result["km"].cluster_centers_, undisturbed.cluster_centers_)
    assert result["km"].inertia_ == undisturbed.inertia_


def test_a_sampled_streamed_fit_resumes_without_drawing_the_sample_again(
    tmp_path, store, monkeypatch
):
    from dkmeans._engine.checkpoint import Checkpoint

    params = {"n_clusters": 12, "random_state": 3, "tol": 0.0, "max_iter": 30,
              "persist": False, "fit_sample": 5000}  # fmt: skip
    observer = Checkpoint.observer

    def interrupted_after_two_polish_passes(self, n_seeding_passes):
        save = observer(self, n_seeding_passes)

        def on_iteration(runs, moments):
            save(runs, moments)
            if max(r.n_iter for r in runs) >= 2:
                raise KeyboardInterrupt

        return on_iteration

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "observer", interrupted_after_two_polish_passes)
        with pytest.raises(KeyboardInterrupt):
            KMeans(**params, checkpoint=tmp_path / "c").fit(str(store))
    resumed = KMeans(**params, checkpoint=tmp_path / "c", resume=True).fit(str(store))
    straight = KMeans(**params).fit(str(store))
    np.testing.assert_array_equal(resumed.cluster_centers_, straight.cluster_centers_)
    assert resumed.n_iter_ == straight.n_iter_ > 2
    # the resumed fit skipped the gathering pass: the polish passes left, then the labels
    assert straight.n_passes_ == 1 + straight.n_iter_ + 1
    assert resumed.n_passes_ == straight.n_iter_ - 2 + 1
