import dask
import numpy as np
import pytest
import zarr

from dkmeans import KMeans, from_zarr, open_zarr_array


def test_group_path_and_variable(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    X = np.random.default_rng(0).normal(size=(300, 3))
    g.create_array("features", shape=X.shape, chunks=(100, 3), dtype=X.dtype)[:] = X
    g.create_array("ids", shape=(300,), dtype="i8")[:] = np.arange(300)
    assert from_zarr(tmp_path / "g.zarr", variable="features").shape == (300, 3)
    # the only 2-D array in the group is found without a name
    assert open_zarr_array(tmp_path / "g.zarr").shape == (300, 3)
    a = KMeans(2, random_state=0).fit(str(tmp_path / "g.zarr" / "features"))
    b = KMeans(2, random_state=0).fit(from_zarr(tmp_path / "g.zarr", "features"))
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    with pytest.raises(KeyError, match="No variable 'nope'"):
        open_zarr_array(tmp_path / "g.zarr", "nope")


def test_ambiguous_group_names_the_arrays(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("a", shape=(10, 2), dtype="f8")
    g.create_array("b", shape=(10, 2), dtype="f8")
    with pytest.raises(KeyError, match=r"\['a', 'b'\]"):
        open_zarr_array(tmp_path / "g.zarr")


def test_feature_names_from_zarr_attributes(tmp_path):
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=(50, 2), dtype="f8")
    z[:] = np.random.default_rng(0).normal(size=(50, 2))
    z.attrs["feature_names"] = ["posts", "churn"]
    km = KMeans(2, random_state=0).fit(z)
    assert list(km.feature_names_in_) == ["posts", "churn"]


# --------------------------------------------------------------------------- write-back


def _dataset_store(path, zarr_format=3, n=1000, chunk=250):
    import xarray as xr

    X = np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32)
    ds = xr.Dataset(
        {"features": (("community", "feature"), X)},
        coords={"feature": np.array(["a", "b", "c"], dtype=object)},
    ).chunk({"community": chunk})
    ds.to_zarr(str(path), mode="w", consolidated=False, zarr_format=zarr_format)
    return X


def _failing_labels(at: int):
    """1,000 labels in chunks of 250 whose chunk starting at row ``at`` fails."""
    import dask.array as da

    def boom(block):
        if block[0] == at:
            raise RuntimeError("interrupted")
        return block

    return da.arange(1000, chunks=250, dtype=np.int32).map_blocks(boom, dtype=np.int32)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_labels_written_beside_the_records_as_a_dataset_variable(tmp_path, zarr_format):
    import xarray as xr

    from dkmeans.io import feature_names, write_labels

    path = tmp_path / "c.zarr"
    X = _dataset_store(path, zarr_format)
    records = open_zarr_array(path, "features")
    assert list(feature_names(records)) == ["a", "b", "c"]  # from the xarray coordinate
    before = (path / "features").stat().st_mtime_ns, records[:].tobytes()
    km = KMeans(3, random_state=0).fit(str(path / "features"))
    write_labels(km.labels_, path, "cluster", variable="features")
    ds = xr.open_zarr(str(path), consolidated=False)
    assert ds["cluster"].dims == ("community",)
    assert ds["cluster"].encoding["chunks"] == (250,)
    np.testing.assert_array_equal(ds["cluster"].values, np.asarray(km.labels_))
    np.testing.assert_array_equal(ds["features"].values, X)
    assert open_zarr_array(path, "features")[:].tobytes() == before[1]  # records untouched


def test_existing_labels_are_replaced_only_with_overwrite(tmp_path):
    from dkmeans.io import write_labels

    path = tmp_path / "c.zarr"
    _dataset_store(path)
    write_labels(np.zeros(1000, np.int32), path, variable="features")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_labels(np.ones(1000, np.int32), path, variable="features")
    assert zarr.open_array(str(path / "cluster"), mode="r")[:].sum() == 0
    write_labels(np.ones(1000, np.int32), path, variable="features", overwrite=True)
    assert zarr.open_array(str(path / "cluster"), mode="r")[:].sum() == 1000
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == []


def test_a_failed_write_leaves_nothing(tmp_path):

    from dkmeans.io import write_labels

    path = tmp_path / "c.zarr"
    _dataset_store(path)

    labels = _failing_labels(at=500)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_labels(labels, path, variable="features")
    assert sorted(p.name for p in path.iterdir()) == ["feature", "features", "zarr.json"]


def test_labels_into_another_store_and_root_arrays(tmp_path):
    from dkmeans.io import write_labels

    root = zarr.create_array(str(tmp_path / "x.zarr"), shape=(100, 2), chunks=(30, 2), dtype="f4")
    with pytest.raises(ValueError, match="another store"):
        write_labels(np.zeros(100, np.int32), tmp_path / "x.zarr")
    out = write_labels(np.arange(100) % 3, root, "k", into=tmp_path / "labels.zarr")
    written = zarr.open_array(out, mode="r")
    assert written.chunks == (30,) and written[:].tolist() == (np.arange(100) % 3).tolist()
    with pytest.raises(ValueError, match="expected \\(100,\\)"):
        write_labels(np.zeros(99, np.int32), root, into=tmp_path / "labels.zarr")


def test_duplicate_feature_names_are_refused(tmp_path):
    arr = zarr.create_array(str(tmp_path / "x.zarr"), shape=(10, 2), dtype="f4")
    arr.attrs["feature_names"] = ["a", "a"]
    with pytest.raises(ValueError, match="duplicated"):
        KMeans(2).fit(str(tmp_path / "x.zarr"))


def test_store_info(tmp_path):
    from dkmeans.io import store_info

    _dataset_store(tmp_path / "c.zarr")
    info = store_info(tmp_path / "c.zarr", "features")
    assert info["shape"] == (1000, 3) and info["chunks"] == (250, 3)
    assert info["dtype"] == "float32" and info["feature_names"] == ["a", "b", "c"]
    assert info["dimension_names"] == ("community", "feature") and info["stored_bytes"] > 0


def test_an_interrupted_overwrite_keeps_the_previous_labels(tmp_path):

    from dkmeans.io import write_labels

    path = tmp_path / "c.zarr"
    _dataset_store(path)
    write_labels(np.full(1000, 7, np.int32), path, variable="features")

    labels = _failing_labels(at=750)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_labels(labels, path, variable="features", overwrite=True)
    assert (zarr.open_array(str(path / "cluster"), mode="r")[:] == 7).all()


def test_two_writers_of_one_labels_array_one_fails_cleanly_never_mixed(tmp_path):
    """A second job writing the same labels while the first holds them fails with one
    clear error; the labels end as the first job's, whole."""
    import threading

    from dkmeans.io import labels_writer

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("features", data=np.zeros((100, 2), dtype="f4"), chunks=(10, 2))
    records = group["features"]
    inside, release = threading.Event(), threading.Event()

    def first():
        with labels_writer(records) as write:
            for start in range(0, 100, 10):
                write(np.full(10, 1, dtype=np.int32), start)
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    second = labels_writer(records, overwrite=True)
    with pytest.raises(FileExistsError, match="being written by another job"), second as write:
        write(np.full(10, 2, dtype=np.int32), 0)
    release.set()
    thread.join()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr" / "cluster"))[:], 1)
    assert not (tmp_path / "g.zarr" / ".cluster.lock").exists()


def test_a_corrupt_chunk_is_one_clear_error_naming_the_store_and_the_chunk(tmp_path):
    import subprocess
    import sys

    from dkmeans import KMeans
    from dkmeans.io import ChunkReadError

    group = zarr.open_group(str(tmp_path / "x.zarr"), mode="w")
    arr = group.create_array("features", shape=(1000, 2), chunks=(100, 2), dtype="f4")
    arr[:] = np.random.default_rng(0).random((1000, 2))
    arr.attrs["feature_names"] = ["a", "b"]
    (tmp_path / "x.zarr" / "features" / "c" / "3" / "0").write_bytes(b"not zstd at all")
    with pytest.raises(ChunkReadError, match=r"chunk features/c/3/0 of .*x\.zarr"):
        KMeans(2, random_state=0).fit(str(tmp_path / "x.zarr"))
    cli = subprocess.run(
        [sys.executable, "-m", "dkmeans", "select-k", str(tmp_path / "x.zarr"), "--k-range",
         "2:3", "--pca", "none", "--no-scale", "-q"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert "chunk features/c/3/0" in cli.stderr


@pytest.fixture
def icechunk_repo(tmp_path):
    icechunk = pytest.importorskip("icechunk")
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    session = repo.writable_session("main")
    X = np.random.default_rng(0).normal(size=(4000, 3)).astype("f4")
    group = zarr.open_group(session.store, mode="w")
    arr = group.create_array("features", shape=X.shape, chunks=(500, 3), dtype="f4")
    arr[:] = X
    arr.attrs["feature_names"] = ["a", "b", "c"]
    session.commit("records")
    return repo, f"icechunk://{tmp_path / 'repo'}#features", X


def test_icechunk_repository_in_and_labels_out_as_one_commit(icechunk_repo, tmp_path):
    from dkmeans.pipeline import Job, run

    repo, url, X = icechunk_repo
    result = run(Job(store=url, k=3, pca=None, model_out=str(tmp_path / "m")))
    session = repo.readonly_session(branch="main")
    labels = zarr.open_array(session.store, path="cluster")[:]
    np.testing.assert_array_equal(labels, result.model.predict(X))
    messages = [c.message for c in repo.ancestry(branch="main")]
    assert messages[0] == f"dkmeans labels 'cluster': k=3, model {tmp_path / 'm'}"
    assert messages[1] == "records"
    with pytest.raises(FileExistsError, match="overwrite"):
        run(Job(store=url, k=4, pca=None))


def test_an_icechunk_retrain_counts_the_churn_against_the_committed_labels(icechunk_repo,
                                                                           tmp_path):  # fmt: skip
    from dkmeans.pipeline import Job, run

    repo, url, _ = icechunk_repo
    run(Job(store=url, k=3, pca=None, model_out=str(tmp_path / "m")))
    read = lambda: zarr.open_array(repo.readonly_session(branch="main").store, path="cluster")[:]  # noqa: E731
    before = read()
    result = run(Job(store=url, k=4, pca=None, overwrite=True, align_to=str(tmp_path / "m")))
    after = read()
    assert result.changes.churn.n_changed == int(np.sum(before != after)) > 0
    assert len(result.changes.new) == 1


def test_two_icechunk_writers_conflict_cleanly(icechunk_repo):
    import threading

    from dkmeans import open_zarr_array
    from dkmeans.io import labels_writer

    repo, url, _ = icechunk_repo
    records = open_zarr_array(url)
    started, release, errors = threading.Event(), threading.Event(), []

    def slow():
        try:
            with labels_writer(records) as write:
                for start in range(0, 4000, 500):
                    write(np.full(500, 1, dtype=np.int32), start)
                started.set()
                release.wait(30)
        except FileExistsError as err:
            errors.append(err)

    thread = threading.Thread(target=slow)
    thread.start()
    assert started.wait(30)
    with labels_writer(open_zarr_array(url)) as write:  # commits first
        for start in range(0, 4000, 500):
            write(np.full(500, 2, dtype=np.int32), start)
    release.set()
    thread.join()
    assert len(errors) == 1 and "Another writer committed" in str(errors[0])
    labels = zarr.open_array(repo.readonly_session(branch="main").store, path="cluster")[:]
    np.testing.assert_array_equal(labels, 2)  # the first commit, whole: never mixed


# --------------------------------------------------------------------------- block memory


def _vm_flags(address: int) -> list[str]:
    """The kernel's VmFlags of the mapping that holds ``address`` (Linux)."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(" ", 1)[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(v, 16) for v in head.split("-"))
                inside = low <= address < high
            elif inside and line.startswith("VmFlags:"):
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


def test_blocks_kept_in_memory_are_their_values_without_huge_page_advice(tmp_path):
    import pickle
    import sys

    from dkmeans._engine.backend import host_empty
    from dkmeans._engine.parallel import keep_in_memory

    rows = np.random.default_rng(0).random((100_000, 16), dtype=np.float32)
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=rows.shape, chunks=(80_000, 16),
                          dtype="f4")  # fmt: skip
    z[:] = rows
    X = from_zarr(tmp_path / "x.zarr")  # a 5 MB block (host_empty maps it), a 1.3 MB one
    with dask.config.set(scheduler="sync"):
        kept = keep_in_memory(X, None)
        np.testing.assert_array_equal(kept.compute(), rows)
    big = host_empty((80_000, 16), np.float32)
    assert big.flags.writeable and big.flags.c_contiguous and big.dtype == np.float32
    big[:] = rows[:80_000]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(big, protocol=5)), rows[:80_000])
    assert host_empty(10, "f8").shape == (10,) and host_empty((0, 3), "f4").shape == (0, 3)
    if not sys.platform.startswith("linux"):
        return

    def advised(block):  # whether the middle of the block, as a task gets it, is advised
        return np.array([["hg" in _vm_flags(block.ctypes.data + block.nbytes // 2)]])

    def flags(arr):
        return arr.map_blocks(advised, chunks=((1, 1), (1,)), dtype=bool).compute(scheduler="sync")

    assert not flags(kept)[0, 0]
    # NumPy advises huge pages from 4 MiB up, when its switch is on (NUMPY_MADVISE_HUGEPAGE):
    # a streamed read keeps NumPy's memory, which its allocator reuses pass after pass
    if np._core.multiarray._get_madvise_hugepage():
        assert flags(X)[0, 0] and advised(np.empty_like(big))[0, 0]
