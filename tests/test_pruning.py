"""algorithm="elkan": bound-pruned Lloyd passes give plain Lloyd's iterations."""

import logging

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster
from hypothesis import given
from hypothesis import strategies as st

from dkmeans import KMeans
from dkmeans._engine import kernels as K
from dkmeans._engine import pruning as P

from .conftest import blobs, write_store

TOL = {np.float64: 1e-6, np.float32: 1e-4}


def _pair(data, init, sample_weight=None, **kw):
    lloyd = KMeans(init.shape[0], init=init, algorithm="lloyd", **kw)
    elkan = KMeans(init.shape[0], init=init, algorithm="elkan", **kw)
    lloyd.fit(data, sample_weight=sample_weight)
    return lloyd, elkan.fit(data, sample_weight=sample_weight)


def _same(lloyd, elkan, dtype):
    np.testing.assert_array_equal(np.asarray(elkan.labels_), np.asarray(lloyd.labels_))
    assert elkan.n_iter_ == lloyd.n_iter_
    np.testing.assert_allclose(elkan.cluster_centers_, lloyd.cluster_centers_, rtol=TOL[dtype],
                               atol=TOL[dtype])  # fmt: skip
    np.testing.assert_allclose(elkan.inertia_, lloyd.inertia_, rtol=TOL[dtype])


# --------------------------------------------------------------------------- the block step


@st.composite
def block_problems(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n = draw(st.integers(1, 600))
    d = draw(st.integers(1, 7))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    weighted = draw(st.booleans())
    offset = draw(st.sampled_from([0.0, 50.0]))
    return dtype, n, d, k, seed, weighted, offset


@given(block_problems())
def test_pruned_step_is_a_lloyd_step(problem):
    """Over several moves of the centres, a block's pruned steps give the partial sums,
    counts and cost of ``lloyd_step`` and its labels, and skipped rows keep them."""
    dtype, n, d, k, seed, weighted, offset = problem
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * 3 + offset).astype(dtype)
    w = rng.uniform(0.1, 2.0, n).astype(dtype) if weighted else None
    shift = X.astype(np.float64).mean(axis=0) if offset else np.zeros(d)
    centers = X[rng.integers(n, size=k)].astype(np.float64) + rng.normal(size=(k, d))
    state, previous, tol = None, None, TOL[dtype]
    for move in range(5):
        cs = K.prepare_centers(centers.astype(dtype), shift, dtype)
        step = P.prepare_step(cs, shift, previous)
        if move == 3:  # as if the sums had taken more moves than the block has rows
            state = state._replace(moved=n + 1)
        part, skipped, state = P.pruned_step(X, w, step, state, n_far=3)
        if move == 3:  # ... so they were summed afresh
            assert state.moved == 0
        (ref,) = K.lloyd_step(X, [cs], shift, w, n_far=3)
        labels = K.assign_labels(X, cs, shift)[0]
        np.testing.assert_array_equal(state.labels, labels)
        np.testing.assert_allclose(part.counts, ref.counts, rtol=1e-12)
        scale = np.abs(ref.sums).max() + 1
        np.testing.assert_allclose(part.sums, ref.sums, rtol=1e-9, atol=1e-9 * scale)
        np.testing.assert_allclose(part.cost, ref.cost, rtol=tol, atol=tol * (ref.cost + 1))
        if move == 0:  # a first step keeps the far rows as lloyd_step does
            assert skipped == 0
            np.testing.assert_array_equal(part.far_rows, ref.far_rows)
        else:
            assert part.far_rows.shape[0] == 0
        # the bounds hold for the exact distances between the shifted float vectors
        xs = (X - np.asarray(shift, dtype)).astype(np.float64)
        dist = np.sqrt(((xs[:, None, :] - cs.shifted.astype(np.float64)[None]) ** 2).sum(-1))
        own = dist[np.arange(n), state.labels]
        assert np.all(state.upper.astype(np.float64) >= own * (1 - 1e-12))
        if k > 1:
            dist[np.arange(n), state.labels] = np.inf
            assert np.all(state.lower.astype(np.float64) <= dist.min(axis=1) * (1 + 1e-12))
        previous = cs
        centers = centers + rng.normal(scale=0.3 * 0.5**move, size=centers.shape)


def test_pruned_steps_double_buffer_and_leave_their_input_state_intact():
    """A step writes into the state's spare arrays (no fresh memory a pass) and never
    into the arrays of the state it reads: run again from that state, it gives the
    same result."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 4)).astype(np.float32)
    centers = X[:5].astype(np.float64)
    shift = np.zeros(4)
    state, previous, seen = None, None, []
    for _ in range(6):
        cs = K.prepare_centers(centers, shift, np.float32)
        step = P.prepare_step(cs, shift, previous)
        before = None if state is None else [a.copy() for a in (state.labels, state.upper,
                                                                 state.lower)]  # fmt: skip
        part, skipped, new = P.pruned_step(X, None, step, state, n_far=0)
        if state is not None:
            for kept, now in zip(before, (state.labels, state.upper, state.lower), strict=True):
                np.testing.assert_array_equal(now, kept)  # the input state is untouched
            made = [a.copy() for a in (new.labels, new.upper, new.lower)]
            again, skipped_again, other = P.pruned_step(X, None, step, state, n_far=0)
            assert skipped_again == skipped
            np.testing.assert_array_equal(again.sums, part.sums)
            for a, b in zip((other.labels, other.upper, other.lower), made, strict=True):
                np.testing.assert_array_equal(a, b)
            # the new state's arrays are the ones its input kept spare (or, at the second
            # step, the first allocation of them), and it keeps the input's as spare
            assert new.spare[0] is state.labels
        seen.append({id(new.labels), id(new.upper), id(new.lower)})
        state, previous = new, cs
        centers = centers + rng.normal(scale=0.05, size=centers.shape)
    # from the third step on, two sets of arrays alternate
    assert seen[2] == seen[4] and seen[3] == seen[5] and not seen[2] & seen[3]


def test_a_step_whose_bounds_fail_too_many_rows_makes_a_full_step_instead():
    """Centres that moved farther than the bounds can follow: the screening stops once
    more than ``FULL_SHARE`` of the rows fail, and the block makes the full step (the
    labels, sums and fresh bounds of a first step), skipping nothing; a small move is
    screened and skips most rows."""
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(3000, 3)) + rng.integers(0, 4, size=(3000, 1)) * 6).astype(np.float32)
    shift = np.zeros(3)
    centers = np.array([[0.0] * 3, [6.0] * 3, [12.0] * 3, [18.0] * 3])
    cs = K.prepare_centers(centers, shift, np.float32)
    _, _, state = P.pruned_step(X, None, P.prepare_step(cs, shift, None), None, n_far=0)
    for move, screened in ((0.01, True), (4.0, False)):
        moved = K.prepare_centers(centers + move * rng.normal(size=centers.shape), shift,
                                  np.float32)  # fmt: skip
        part, skipped, new = P.pruned_step(X, None, P.prepare_step(moved, shift, cs),
                                           state, n_far=0)  # fmt: skip
        (ref,) = K.lloyd_step(X, [moved], shift, None)
        np.testing.assert_array_equal(new.labels, K.assign_labels(X, moved, shift)[0])
        np.testing.assert_allclose(part.sums, ref.sums, rtol=1e-9, atol=1e-6)
        if screened:
            assert skipped > 0.9 * X.shape[0]
            continue
        assert skipped == 0 and new.moved == 0
        _, _, fresh = P.pruned_step(X, None, P.prepare_step(moved, shift, None), None, n_far=0)
        for a, b in zip(new[:3], fresh[:3], strict=True):  # labels, upper, lower
            np.testing.assert_array_equal(a, b)


def test_step_rounds_bounds_outwards():
    """Gaps and drifts are rounded outwards; k = 1 has no other centre."""
    cs = K.prepare_centers(np.array([[0.0, 0.0], [3.0, 4.0]]), np.zeros(2), np.float64)
    moved = K.prepare_centers(np.array([[0.0, 1.0], [3.0, 4.0]]), np.zeros(2), np.float64)
    step = P.prepare_step(moved, np.zeros(2), cs)
    assert step.drift[0] >= 1.0 and step.drift[1] == 0.0
    assert step.other_drift.tolist() == [0.0, step.drift[0]]
    assert np.all(step.half_gap <= 0.5 * np.sqrt(18.0)) and np.all(step.half_gap > 2.1)
    one = P.prepare_step(K.prepare_centers(np.ones((1, 3)), np.zeros(3), np.float32),
                         np.zeros(3), None)  # fmt: skip
    assert one.half_gap[0] == np.inf and one.first


# --------------------------------------------------------------------------- the fit


@st.composite
def fit_problems(draw):
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    n = draw(st.integers(40, 2500))
    d = draw(st.integers(1, 8))
    k = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**31 - 1))
    weighted = draw(st.booleans())
    chunk = draw(st.sampled_from([None, 97, 400]))
    std = draw(st.sampled_from([0.3, 1.0, 3.0]))
    return dtype, n, d, k, seed, weighted, chunk, std


@given(fit_problems())
def test_elkan_gives_lloyds_iterations(problem):
    """Same init: the same labels, n_iter_ and centres (to float rounding), in memory
    (NumPy) and on dask arrays kept in memory, weighted or not, whatever the blocks."""
    dtype, n, d, k, seed, weighted, chunk, std = problem
    X, _, _ = blobs(n=n, d=d, k=max(k, 2), std=std, seed=seed % 1000, dtype=dtype)
    rng = np.random.default_rng(seed)
    init = X[rng.choice(n, size=k, replace=False)]
    kw = {"max_iter": 60}
    if weighted:
        kw["sample_weight"] = rng.uniform(0.2, 3.0, n)
    data = X if chunk is None else da.from_array(X, chunks=(chunk, d))
    lloyd, elkan = _pair(data, init, **kw)
    assert elkan.persisted_ == lloyd.persisted_
    _same(lloyd, elkan, dtype)
    assert elkan.skip_rate_.shape == (elkan.n_iter_,)
    assert np.all(lloyd.skip_rate_ == 0)


def test_several_runs_are_pruned_each_with_its_own_bounds():
    X, _, _ = blobs(n=3000, d=4, k=5, std=0.5, seed=7)
    lloyd = KMeans(5, init="random", n_init=4, random_state=2).fit(X)
    elkan = KMeans(5, init="random", n_init=4, random_state=2, algorithm="elkan").fit(X)
    _same(lloyd, elkan, np.float64)
    assert elkan.skip_rate_.max() > 0.5


def test_results_do_not_depend_on_the_grouping_of_blocks():
    X, _, _ = blobs(n=4000, d=5, k=6, std=1.0, seed=5, dtype=np.float32)
    data = da.from_array(X, chunks=(250, 5))
    init = X[:6]
    got = []
    for task_bytes in ("1 B", "64 MiB"):
        with dask.config.set({"dkmeans.task-bytes": task_bytes}):
            km = KMeans(6, init=init, algorithm="elkan").fit(data)
        got.append((km.cluster_centers_, np.asarray(km.labels_), km.skip_rate_))
    for a, b in zip(*got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_threaded_equals_local_cluster():
    X, _, _ = blobs(n=4000, d=5, k=6, std=1.0, seed=4, dtype=np.float32)
    init = X[:6]
    data = da.from_array(X, chunks=(500, 5))
    threaded = KMeans(6, init=init, algorithm="elkan").fit(data)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):  # fmt: skip
        got = KMeans(6, init=init, algorithm="elkan").fit(data)
        labels = np.asarray(got.labels_)
        auto = KMeans(6, init=init).fit(data)  # "auto" prunes on a cluster too
        plain = KMeans(6, init=init, algorithm="lloyd").fit(data)
    np.testing.assert_array_equal(auto.cluster_centers_, threaded.cluster_centers_)
    np.testing.assert_array_equal(auto.skip_rate_, threaded.skip_rate_)
    assert np.all(plain.skip_rate_ == 0)
    np.testing.assert_allclose(plain.cluster_centers_, threaded.cluster_centers_, rtol=1e-5)
    assert got.persisted_ and threaded.persisted_
    np.testing.assert_array_equal(got.cluster_centers_, threaded.cluster_centers_)
    np.testing.assert_array_equal(labels, np.asarray(threaded.labels_))
    np.testing.assert_array_equal(got.skip_rate_, threaded.skip_rate_)
    assert got.n_iter_ == threaded.n_iter_ and got.skip_rate_.max() > 0


def test_skip_rate_grows_on_separated_blobs(caplog):
    X, _, _ = blobs(n=20000, d=8, k=6, std=1.5, seed=1, dtype=np.float32)
    with caplog.at_level(logging.INFO, logger="dkmeans"):
        km = KMeans(6, init=X[:6], algorithm="elkan", tol=0).fit(X)
    rate = km.skip_rate_
    assert km.n_iter_ > 10
    assert rate[:2].tolist() == [0.0, 0.0]  # the pass that measures the moments; the first
    assert rate[-1] > 0.9 and rate[-5:].mean() > rate[2:5].mean()
    assert "bounds skipped the distances" in caplog.text


def test_an_emptied_cluster_is_relocated_as_plain_lloyd_does(caplog):
    """Pruned passes know no far rows: the iteration that empties a cluster is made
    again with every distance, and relocates as scikit-learn (and plain Lloyd) does."""
    rng = np.random.default_rng(476)  # a cluster empties in the third iteration
    X = rng.uniform(0, 10, (12, 1))
    init = rng.uniform(0, 10, (4, 1))
    with caplog.at_level(logging.INFO, logger="dkmeans"):
        lloyd = KMeans(4, init=init, tol=0).fit(X)
    assert "Iteration 3: relocated 1 empty cluster(s)." in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dkmeans"):
        elkan = KMeans(4, init=init, tol=0, algorithm="elkan").fit(X)
    assert "a cluster emptied" in caplog.text
    assert "Iteration 3: relocated 1 empty cluster(s)." in caplog.text
    _same(lloyd, elkan, np.float64)
    np.testing.assert_array_equal(elkan.cluster_centers_, lloyd.cluster_centers_)


def test_streamed_data_is_pruned_with_bounds_in_memory(tmp_path):
    """Streamed from its store, each pass still reads every block once, but the bounds
    stay in memory between passes and skip the arithmetic: the same iterations."""
    X, _, _ = blobs(n=3000, d=4, k=4, std=0.7, seed=9, dtype=np.float32)
    path = str(write_store(tmp_path / "x.zarr", X, 500))
    init = X[:4]
    lloyd = KMeans(4, init=init, persist=False, algorithm="lloyd").fit(path)
    elkan = KMeans(4, init=init, persist=False, algorithm="elkan").fit(path)
    auto = KMeans(4, init=init, persist=False).fit(path)
    assert not elkan.persisted_
    for pruned in (elkan, auto):
        _same(lloyd, pruned, np.float32)
        assert pruned.n_passes_ == lloyd.n_passes_  # no pass more for the bounds
        assert pruned.skip_rate_.max() > 0
    assert np.all(lloyd.skip_rate_ == 0)
    held = KMeans(4, init=init, persist=True, algorithm="elkan").fit(path)
    _same(lloyd, held, np.float32)
    assert held.skip_rate_.max() > 0


def test_bounds_that_do_not_fit_run_plain_lloyd(monkeypatch, caplog):
    from dkmeans._engine import parallel as PL

    monkeypatch.setattr(PL, "memory_budget", lambda client, meta=None: 1000)
    X, _, _ = blobs(n=2000, d=3, k=3, std=0.5, seed=2)
    with caplog.at_level(logging.INFO, logger="dkmeans"):
        km = KMeans(3, init=X[:3], algorithm="elkan").fit(X)
    assert "would not fit in memory" in caplog.text
    assert np.all(km.skip_rate_ == 0)


@pytest.mark.parametrize("kw", [{"metric": "cosine"}, {"fit_sample": 800, "random_state": 3}])
def test_cosine_and_a_fit_sample_are_pruned_too(kw):
    X, _, _ = blobs(n=3000, d=5, k=4, std=0.6, seed=8, dtype=np.float32)
    init = "k-means||" if "fit_sample" in kw else X[:4]
    lloyd = KMeans(4, init=init, **kw).fit(X)
    elkan = KMeans(4, init=init, algorithm="elkan", **kw).fit(X)
    _same(lloyd, elkan, np.float32)


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_float32_bounds_round_outwards_within_a_few_ulps(v):
    """Bounds stored in float32 never cross their float64 value, and stay close to it."""
    up, down = P._up(v), P._down(v)
    assert np.float64(up) >= v and np.float64(down) <= v
    if abs(v) < 1e38:  # below float32's largest value: at most 5 ulps away
        for r in (up, down):
            assert abs(np.float64(r) - v) <= 5 * np.spacing(np.float32(abs(v)) + np.float32(1e-45))
