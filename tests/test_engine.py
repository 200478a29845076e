"""The pass engine: grouped tasks, a fixed combine tree, graphs linear in the blocks."""

import contextlib
import logging
import time

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster
from hypothesis import given, settings
from hypothesis import strategies as st

from dkmeans import KMeans
from dkmeans._engine import graph as G
from dkmeans._engine.parallel import RowBlocks, group_size, tree_depth

from .conftest import blobs, counting_array, write_store


def _naive_tree(leaves: list[str], split: int) -> str:
    """The reference order: groups of ``split`` in block order, level by level."""
    while len(leaves) > 1:
        leaves = ["(" + ",".join(leaves[i : i + split]) + ")" for i in range(0, len(leaves), split)]
    return leaves[0]


def _nest(parts):  # a combine that shows the tree it was applied in
    return "(" + ",".join(parts) + ")"


def _block_name(x, w, offset):
    return str(offset)


@given(
    n_blocks=st.integers(1, 90),
    split=st.integers(2, 5),
    task_bytes=st.sampled_from([1, 2_000, 20_000, 10**9]),
)
def test_combine_tree_is_the_same_whatever_the_grouping(n_blocks, split, task_bytes):
    X = da.zeros((n_blocks * 10, 2), chunks=(10, 2))
    with dask.config.set({"dkmeans.split-every": split, "dkmeans.task-bytes": task_bytes}):
        rows = RowBlocks(X)
        got = rows.reduce(_block_name, _nest, "tree", per_block=lambda i: (int(rows.offsets[i]),))
    assert got == _naive_tree([str(10 * i) for i in range(n_blocks)], split)
    assert rows.n_passes == 1


def test_group_size_is_a_power_of_the_fan_in_within_the_byte_target():
    with dask.config.set({"dkmeans.split-every": 8, "dkmeans.task-bytes": "64 MiB"}):
        assert group_size(64_000, 65536, threads=2) == 512  # 32 MiB a task
        assert group_size(1000, 65536, threads=2) == 64  # two tasks a thread at least
        assert group_size(1000, 2**27, threads=2) == 1  # 128 MiB blocks stay alone
    assert tree_depth(1, 8) == 0 and tree_depth(8, 8) == 1 and tree_depth(9, 8) == 2


@contextlib.contextmanager
def _two_workers(threads: int):
    """A Client of an in-process LocalCluster of two workers."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=threads, processes=False,
                     dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


def _fits(X, persist=False, **config):
    out = []
    with dask.config.set({f"dkmeans.{k}": v for k, v in config.items()}):
        for init in ("k-means||", "random"):
            km = KMeans(5, init=init, random_state=3, n_init=2, persist=persist).fit(X)
            out.append((km.cluster_centers_, km.inertia_, np.asarray(km.labels_), km.n_passes_))
    return out


def _assert_identical(a, b):
    for (ca, ia, la, pa), (cb, ib, lb, pb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ca, cb)
        assert ia == ib and pa == pb
        np.testing.assert_array_equal(la, lb)


def test_fit_is_bit_identical_whatever_the_grouping_and_the_workers(tmp_path):
    X = blobs(n=6000, d=4, k=5, seed=2, dtype=np.float32)[0]
    Xd = da.from_zarr(str(write_store(tmp_path / "x.zarr", X, 100)))  # 60 blocks
    alone = _fits(Xd, **{"task-bytes": 1})
    _assert_identical(alone, _fits(Xd, **{"task-bytes": 20_000}))  # 8 blocks a task
    _assert_identical(alone, _fits(Xd, **{"task-bytes": "1 GiB"}))
    with _two_workers(threads=1):
        _assert_identical(alone, _fits(Xd, **{"task-bytes": 20_000}))
        # held by the workers: a task per worker over its blocks, wherever they lie
        held = _fits(Xd, persist=True)
    with dask.config.set(scheduler="threads"):
        _assert_identical(_fits(Xd, persist=True, **{"task-bytes": 1}), held)


def _held_array(client, workers: list, n_blocks: int, rows: int, cols: int = 2) -> da.Array:
    """A dask array whose block i a cluster holds on ``workers[i % len(workers)]``
    (values ``i``; ``cols=0``: one-dimensional)."""
    shape = (rows, cols) if cols else (rows,)
    futures = [
        client.submit(np.full, shape, float(i), workers=[workers[i % len(workers)]], pure=False)
        for i in range(n_blocks)
    ]
    name = f"held-{cols}"
    dsk = {(name, i, 0) if cols else (name, i): f for i, f in enumerate(futures)}
    chunks = ((rows,) * n_blocks, (cols,)) if cols else ((rows,) * n_blocks,)
    return da.Array(dsk, name, chunks, dtype=np.float64)


def test_blocks_persisted_on_a_cluster_are_grouped_by_the_worker_holding_them():
    with _two_workers(threads=2) as client:
        X = da.zeros((6400, 2), chunks=(100, 2))
        rows = RowBlocks(X, client=client)
        assert not rows.scattered and len(rows.groups) < 64  # read by the tasks: grouped
        # each worker holds every other block: its groups are scattered over the order
        workers = sorted(client.nthreads())
        held = _held_array(client, workers, 64, 100)
        rows = RowBlocks(held, client=client)
        assert rows.scattered and len(rows.groups) == 4  # one task a worker thread
        assert sorted(i for g in rows.groups for i in g) == list(range(64))
        for group in rows.groups:
            assert len({i % 2 for i in group}) == 1  # one worker's blocks
        expected = _naive_tree([str(i) for i in range(64)], 8)
        assert rows.reduce(_block_name, _nest, "tree", per_block=lambda i: (i,)) == expected
        names = rows.map_blocks(_block_name, "names", per_block=lambda i: (i,))
        assert names == [str(i) for i in range(64)]  # block order, whatever the groups
        with dask.config.set({"dkmeans.split-every": 2}):  # 4 groups: folded by tasks first
            rows = RowBlocks(held, client=client)
            got = rows.reduce(_block_name, _nest, "tree", per_block=lambda i: (i,))
        assert got == _naive_tree([str(i) for i in range(64)], 2)


@given(
    where=st.lists(st.sampled_from(["a", "b", "c", None]), max_size=40),
    threads=st.fixed_dictionaries({"a": st.integers(1, 4), "b": st.integers(1, 4),
                                   "c": st.integers(1, 4)}),
)  # fmt: skip
def test_fair_moves_give_each_worker_its_share_and_no_worker_more_than_it_had(where, threads):
    from dkmeans._engine.parallel import fair_moves

    moves = fair_moves(where, threads)
    after = [moves.get(i, w) for i, w in enumerate(where)]
    n, total = sum(w is not None for w in where), sum(threads.values())
    for w in threads:
        before, now = where.count(w), after.count(w)
        share = n * threads[w] / total
        assert abs(now - share) < 1  # a whole-block share: floor or ceiling
        assert now <= max(before, -(-n * threads[w] // total))
    for i, to in moves.items():  # only known blocks move, from over-share to under-share
        assert where[i] is not None and to != where[i]
        assert where.count(where[i]) > after.count(where[i]) and where.count(to) < after.count(to)


def test_blocks_a_worker_holds_beyond_its_share_are_copied_to_the_others():
    with _two_workers(threads=1) as client:
        a, b = sorted(client.nthreads())
        placement = [a] * 12 + [b] * 4
        X = _held_array(client, placement, 16, 10)
        w = _held_array(client, placement, 16, 10, cols=0)
        rows = RowBlocks(X, w, client=client)
        holders = {k: tuple(v) for k, v in client.who_has(rows._x.refs).items()}
        counts = [sum(holders[r.key] == (x,) for r in rows._x.refs) for x in (a, b)]
        assert counts == [8, 8] and len(rows.groups) == 2
        for group in rows.groups:  # a group's blocks and weights on its one worker
            owners = {holders[rows._x.refs[i].key] for i in group}
            owners |= {tuple(client.who_has([rows._w.refs[i]])[rows._w.refs[i].key])
                       for i in group}  # fmt: skip
            assert len(owners) == 1
        expected = _naive_tree([str(i) for i in range(16)], 8)
        assert rows.reduce(_block_name, _nest, "tree", per_block=lambda i: (i,)) == expected
        sums = rows.map_blocks(lambda x, w_: (float(x.sum()), float(w_.sum())), "sums")
        assert sums == [(20.0 * i, 10.0 * i) for i in range(16)]  # the copies are the blocks


def test_unaligned_replicas_are_found_to_be_copied():
    from types import SimpleNamespace

    from dkmeans._engine.parallel import _own_copy, _unaligned_keys

    raw = bytearray(4 * 100 + 3)
    unaligned = np.frombuffer(memoryview(raw)[3:], dtype=np.float32)
    assert not unaligned.flags.aligned  # as a block received from another worker lies
    worker = SimpleNamespace(data={"x": unaligned, "y": np.zeros(100, np.float32), "z": 1})
    assert _unaligned_keys(["x", "y", "z", "gone"], dask_worker=worker) == ["x"]
    copy = _own_copy(unaligned)
    assert copy.flags.aligned and np.array_equal(copy, unaligned)


def _name_kept(x, w):
    """A block's partial (its value as a name) and a per-row value kept beside it."""
    return str(int(x[0, 0])), x[:, 0] * 2


def _long_name_kept(x, w):
    return str(int(x[0, 0])).ljust(40), x[:, 0] * 2


def _poisoned(x, w):
    if x[0, 0] == 5:
        raise ArithmeticError("block 5 is poisoned")
    return _name_kept(x, w)


def _kept_pass(rows, chunk, name, node_bytes=16):
    """A pass whose group tasks keep per-row values: (root, the kept handles)."""
    b, key, refs = rows._groups_pass(chunk, _nest, name, (), None, keep=True)
    root = rows._tree(b, key, refs, _nest, kept=True, node_bytes=node_bytes)
    return root.run(b, [r.key for r in refs])


def _pushed_events(client) -> int:
    return sum(isinstance(m, dict) and "dkmeans-push" in m for _, m in client.get_events(client.id))


def test_a_kept_pass_on_a_cluster_takes_its_nodes_as_the_group_tasks_send_them():
    with _two_workers(threads=1) as client:
        workers = sorted(client.nthreads())
        X = _held_array(client, workers, 16, 10)
        with dask.config.set({"dkmeans.push-bytes": 400}):
            rows = RowBlocks(X, client=client)
        names = [str(i) for i in range(16)]
        expected = _naive_tree(names, 8)
        before = _pushed_events(client)
        root, handles = _kept_pass(rows, _name_kept, "pushed")
        assert root == expected
        assert _pushed_events(client) - before == len(rows.groups) == 2  # no item tasks
        kept = [v for h in client.gather(handles) for v in h[1]]  # per block, group order
        order = [i for g in rows.groups for i in g]
        assert [float(v[0]) for v in kept] == [2.0 * i for i in order]  # stayed beside them
        # nodes larger than expected are not sent: taken from the group tasks' outputs
        before = _pushed_events(client)
        root = _kept_pass(rows, _long_name_kept, "long")[0]
        assert root == _naive_tree([n.ljust(40) for n in names], 8)
        assert _pushed_events(client) == before
        # nodes expected too large, or none to be sent: item tasks in the graph
        assert _kept_pass(rows, _name_kept, "large", node_bytes=51)[0] == expected
        with dask.config.set({"dkmeans.push-bytes": 0}):
            rows = RowBlocks(X, client=client)
        assert _kept_pass(rows, _name_kept, "off")[0] == expected
        assert _pushed_events(client) == before
        # a group task's error is raised, not waited on
        with pytest.raises(ArithmeticError, match="block 5 is poisoned"):
            _kept_pass(RowBlocks(X, client=client), _poisoned, "poisoned")


def test_a_client_that_took_pushed_nodes_leaves_the_scheduler_without_an_error(caplog):
    # subscribed to its own topic, a closing client was sent the scheduler's last event
    # on it after its stream closed: a CRITICAL "Closed comm" in the scheduler's log
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:  # fmt: skip
        with caplog.at_level(logging.CRITICAL, logger="distributed"):
            with Client(cluster) as client:
                X = _held_array(client, sorted(client.nthreads()), 16, 10)
                with dask.config.set({"dkmeans.push-bytes": 400}):
                    assert _kept_pass(RowBlocks(X, client=client), _name_kept, "leave")[0]
                assert _pushed_events(client) == 2
            deadline = time.monotonic() + 10
            while client.id in cluster.scheduler.client_comms and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.id not in cluster.scheduler.client_comms
        assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]


def test_a_pass_releases_its_futures_after_the_next_submission_or_soon_after():
    with _two_workers(threads=1) as client:
        rows = RowBlocks(_held_array(client, sorted(client.nthreads()), 16, 10), client=client)

        def keys(stage):
            return client.run_on_scheduler(
                lambda dask_scheduler: sum(stage in str(k) for k in dask_scheduler.tasks)
            )

        rows.reduce(_block_name, _nest, "first", per_block=lambda i: (i,))
        time.sleep(0.2)  # a release sent as the pass ended would have landed by now
        assert keys("dkmeans-first") > 0  # held: releasing now would delay the next pass
        rows.reduce(_block_name, _nest, "second", per_block=lambda i: (i,))
        deadline = time.monotonic() + 10
        while keys("dkmeans-first") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keys("dkmeans-first") == 0  # released once the next pass was submitted
        deadline = time.monotonic() + 10
        while keys("dkmeans-second") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keys("dkmeans-second") == 0  # and the last pass's soon after, with none
        rows.reduce(_block_name, _nest, "third", per_block=lambda i: (i,))
    deadline = time.monotonic() + 10  # a closed client's too, though its loop has stopped
    while id(client) in G._HELD and time.monotonic() < deadline:
        time.sleep(0.05)
    assert id(client) not in G._HELD


def _maximal_subtrees(group: set, n: int, split: int) -> int:
    """Naive count of the fixed tree's nodes whose leaves all lie in ``group`` and
    whose parent's do not."""

    def leaves(level, j):
        return set(range(j * split**level, min((j + 1) * split**level, n)))

    depth, count = tree_depth(n, split), 0
    for level in range(depth + 1):
        for j in range(-(-n // split**level)):
            inside = leaves(level, j) <= group
            parent_inside = level < depth and leaves(level + 1, j // split) <= group
            count += inside and not parent_inside
    return count


@given(
    n=st.integers(1, 70),
    split=st.integers(2, 5),
    owner=st.lists(st.integers(0, 3), min_size=70, max_size=70),
)
@settings(max_examples=60, deadline=None)
def test_scattered_groups_fold_into_the_one_fixed_tree(n, split, owner):
    from dkmeans._engine.parallel import finish_tree, fold_scattered

    leaves = [str(i) for i in range(n)]
    groups = [g for g in (tuple(i for i in range(n) if owner[i] == o) for o in range(4)) if g]
    nodes = [fold_scattered([leaves[i] for i in g], g, _nest, n, split) for g in groups]
    for g, folded in zip(groups, nodes, strict=True):  # every whole subtree, no more
        assert len(folded) == _maximal_subtrees(set(g), n, split)
    assert finish_tree(nodes, _nest, n, split) == _naive_tree(leaves, split)


def test_a_pass_builds_a_graph_linear_in_blocks_with_few_tasks(monkeypatch, tmp_path):
    X = blobs(n=12800, d=3, k=3, seed=1, dtype=np.float32)[0]
    path = write_store(tmp_path / "x.zarr", X, 50)  # 256 chunks
    arr, store = counting_array(path)
    sizes = []
    run = G.Builder.run

    def counting_run(self, gather, keep=(), pushed=()):
        sizes.append(len(self.graph()))
        return run(self, gather, keep, pushed)

    monkeypatch.setattr(G.Builder, "run", counting_run)
    with dask.config.set({"dkmeans.task-bytes": 8 * 50 * 12}):  # 8 chunks a task
        km = KMeans(3, random_state=0, max_iter=3, tol=0, persist=False).fit(arr)
    passes = [n for n in sizes if n >= 32]  # graphs with a task per group of 8 chunks
    assert len(passes) == km.n_passes_  # one graph per counted pass
    # a pass: 32 group tasks (each reading its 8 chunks itself), the tree above them,
    # the shared values; where a pass keeps per-row values, an item task per group for
    # the tree and one for the kept state; the labels pass keeps a task per chunk
    # (labels stay chunked like the records)
    assert sorted(passes)[-2] <= 4 * 32 + 8
    assert max(passes) <= 256 + 4 * 32 + 8
    # each pass reads each chunk once; the first centre's fetch reads one more
    assert 256 * km.n_passes_ <= store.chunk_reads <= 256 * km.n_passes_ + 1


def test_the_exact_silhouette_reads_each_block_once(tmp_path):
    from dkmeans import silhouette_samples

    X, y, _ = blobs(n=800, d=3, k=3, seed=4, dtype=np.float32)
    arr, store = counting_array(write_store(tmp_path / "x.zarr", X, 100))  # 8 chunks
    got = silhouette_samples(da.from_zarr(arr), y)
    assert isinstance(got, da.Array)
    before = store.chunk_reads
    got = got.compute()
    assert store.chunk_reads - before == 8
    from sklearn.metrics import silhouette_samples as sk

    np.testing.assert_allclose(got, sk(X.astype(np.float64), y), rtol=1e-5, atol=1e-6)


def test_a_weighted_first_centre_reads_only_the_weights(tmp_path):
    X = blobs(n=800, d=3, k=3, seed=5, dtype=np.float32)[0]
    arr, store = counting_array(write_store(tmp_path / "x.zarr", X, 100))
    w = da.from_array(np.linspace(0.5, 2.0, 800), chunks=100)
    rows = RowBlocks(da.from_zarr(arr), w)
    index = rows.draw_row(np.random.default_rng(0))
    assert 0 <= index < 800 and store.chunk_reads == 0 and rows.n_passes == 0


@pytest.mark.parametrize(("key", "value"), [("split-every", 1), ("task-bytes", 0),
                                            ("split-every", "eight"),
                                            ("push-bytes", -1)])  # fmt: skip
def test_bad_tuning_keys_get_one_clear_error(key, value):
    with dask.config.set({f"dkmeans.{key}": value}), pytest.raises(ValueError, match=key):
        RowBlocks(da.zeros((100, 2), chunks=(10, 2)))


_WARM_UP_SCRIPT = """
import sys

import dask
import numba
import numpy as np
import zarr

from dkmeans import KMeans
from dkmeans._engine import warmup


def loaded():
    return {
        (name, fn.__name__, sig)
        for name, module in list(sys.modules.items()) if name.startswith("dkmeans")
        for fn in vars(module).values() if isinstance(fn, numba.core.registry.CPUDispatcher)
        for sig in fn.overloads
    }


z = zarr.create_array(sys.argv[1], shape=(4000, 5), chunks=(1000, 5), dtype="f4")
z[:] = np.random.default_rng(0).normal(size=(4000, 5)) + np.arange(4000)[:, None] % 4 * 9
assert not loaded()
thread = warmup.in_background(np.float32)
assert warmup.in_background(np.float32) is None
thread.join()
warm = loaded()
with dask.config.set(scheduler="threads"):
    km = KMeans(4, random_state=0, algorithm="elkan").fit(sys.argv[1])
assert km.n_iter_ >= 2 and km.labels_.shape == (4000,)
print(len(warm), sorted(loaded() - warm))
"""


def test_the_background_warm_up_loads_every_kernel_a_fit_from_a_store_calls(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _WARM_UP_SCRIPT, str(tmp_path / "x.zarr")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    n_warm, missing = out.stdout.split(" ", 1)
    assert int(n_warm) >= 8 and missing.strip() == "[]"
