"""k-means|| internals: the cut-draw fallback and candidate weighting."""

import dask
import dask.array as da
import numpy as np

from dkmeans._engine import kernels as K
from dkmeans._engine import reductions as R
from dkmeans._engine import seeding as _init
from dkmeans._engine.parallel import RowBlocks

from .conftest import blobs


def _rows(X, chunks):
    return RowBlocks(da.from_array(X, chunks=(chunks, -1)))


def _seed(rows, k, rng, **options):
    return _init.run_seeders(rows, [_init.kmeans_parallel(rows, k, rng, **options)])[0]


def test_cut_draws_are_gathered_and_give_the_same_candidates():
    """With room for only 2 keys a block, the fallback must recover the exact sample."""
    X, _, _ = blobs(n=2000, d=3, k=8, std=1.0, seed=9)
    full = _seed(_rows(X, 250), 8, np.random.default_rng(0), init_rounds=3)
    cut_rows = _rows(X, 250)
    cut = _seed(cut_rows, 8, np.random.default_rng(0), init_rounds=3, _n_keep=2)
    np.testing.assert_array_equal(cut.centers, full.centers)
    # 3 rounds + weights pass + at least one gather pass
    assert cut_rows.n_passes >= 5


def test_candidate_weights_sum_to_total_weight():
    X, _, _ = blobs(n=1000, d=2, k=4, seed=1)
    w = np.random.default_rng(0).uniform(0, 2, size=1000)
    rows = RowBlocks(da.from_array(X, chunks=(200, -1)), da.from_array(w, chunks=200))
    rng = np.random.default_rng(0)
    c0 = rows.fetch_rows([rows.draw_row(rng)])
    shift = c0[0].astype(np.float64)
    job = R.SeedingJob("round", K.prepare_centers(c0, shift, X.dtype), shift, scale=8.0, n_keep=30)
    (draws,), (state,), _mom = rows.seeding_pass([(job, None, 1, 1)], with_moments=True, name="t")
    new = draws.rows[draws.keys > draws.cost]
    job = R.SeedingJob(
        "weights", K.prepare_centers(new, shift, X.dtype), shift, first_index=1,
        n_candidates=1 + len(new),
    )  # fmt: skip
    (weights,), _, _ = rows.seeding_pass([(job, state, 1, 2)], with_moments=False, name="w")
    assert weights.shape == (1 + len(new),)
    np.testing.assert_allclose(weights.sum(), w.sum())
    # each candidate's weight is the weight of the rows nearest to it
    C = np.concatenate([c0, new])
    nearest = ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_allclose(weights, np.bincount(nearest, weights=w, minlength=len(C)))


def test_one_compute_per_lloyd_pass():
    from dkmeans._engine.lloyd import lloyd

    X, _, _ = blobs(n=1000, d=3, k=3)
    rows = _rows(X, 100)
    computes = []

    def counting_get(dsk, keys, **kw):
        computes.append(1)
        return dask.threaded.get(dsk, keys, **kw)

    with dask.config.set(scheduler=counting_get):
        runs, _ = lloyd(rows, [X[:3]], max_iter=4, tol=0.0, moments=None)
    assert len(computes) == runs[0].n_iter == rows.n_passes


def test_candidates_handed_to_the_recluster_are_bounded(monkeypatch):
    """However many rows, k-means|| hands at most 1 + rounds × top_count(ℓ) candidates
    (ℓ = 2k a round) to the in-memory recluster: its memory is O(k·d), not O(n)."""
    seen = []
    real = _init.recluster_candidates

    def spy(cand, weights, n_clusters, rng, n_samples):
        seen.append(cand.shape[0])
        return real(cand, weights, n_clusters, rng, n_samples)

    monkeypatch.setattr(_init, "recluster_candidates", spy)
    k = 32
    X, _, _ = blobs(n=40_000, d=4, k=k, std=3.0, seed=3)
    rows = _rows(X, 4000)
    _seed(rows, k, np.random.default_rng(0), init_rounds=5)
    rounds = rows.n_passes - 1  # the last pass weights the candidates
    assert k <= seen[0] <= 1 + rounds * R.top_count(2.0 * k)


def test_replayed_rounds_give_the_same_seeds_as_kept_state(monkeypatch):
    """Without per-row state on the workers (replaying the earlier rounds instead), the
    candidates, their weights and the centres are bit for bit the same -- including
    after a cut draw's gather pass and with sample weights."""
    X, _, _ = blobs(n=3000, d=3, k=8, std=1.0, seed=9)
    X = X.astype(np.float32)
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=X.shape[0])

    def seeds(keep, **options):
        monkeypatch.setattr(_init, "keeps_seeding_state", lambda rows, concurrent: keep)
        rows = RowBlocks(da.from_array(X, chunks=(400, -1)), da.from_array(w, chunks=400))
        return _seed(rows, 8, np.random.default_rng(0), init_rounds=3, **options), rows

    for options in ({}, {"_n_keep": 2}):
        kept, kept_rows = seeds(True, **options)
        replayed, replayed_rows = seeds(False, **options)
        np.testing.assert_array_equal(replayed.centers, kept.centers)
        assert replayed_rows.n_passes == kept_rows.n_passes


def test_large_data_on_a_small_budget_replays_instead_of_keeping_state(monkeypatch):
    from dkmeans._engine import parallel as PL

    rows = _rows(np.zeros((1000, 2), np.float32), 250)
    assert _init.keeps_seeding_state(rows)
    monkeypatch.setattr(PL, "memory_budget", lambda client, meta=None: 4 * 2 * 8 * 1000)
    assert _init.keeps_seeding_state(rows)
    assert not _init.keeps_seeding_state(rows, concurrent=2)  # a sweep seeds several k
    monkeypatch.setattr(PL, "memory_budget", lambda client, meta=None: 4 * 2 * 8 * 1000 - 4)
    assert not _init.keeps_seeding_state(rows)


def test_the_recluster_restarts_follow_the_data_size_and_only_improve_the_candidates_fit():
    assert _init.recluster_restarts(1000, 30) == 10  # small data: the floor
    assert _init.recluster_restarts(4_000_000, 155) == 100  # W1: the ceiling
    assert _init.recluster_restarts(2_000_000, 1000) == 20  # many candidates: fewer
    assert _init.recluster_restarts(4_000_000, 10_000) == 10
    X, _, _ = blobs(n=3000, d=4, k=40, std=2.0, seed=5)
    cand = X[np.random.default_rng(1).choice(len(X), 300, replace=False)]
    weights = np.random.default_rng(2).uniform(1, 50, size=300)

    def weighted_inertia(centers):
        d2 = ((cand[:, None, :] - centers[None]) ** 2).sum(-1).min(1)
        return float((weights * d2).sum())

    def fit(n_samples):
        rng = np.random.default_rng(0)
        return weighted_inertia(_init.recluster_candidates(cand, weights, 12, rng, n_samples))

    fits = [fit(n) for n in (0, 300 * 100 * 40, 300 * 100 * 100)]
    assert fits[2] <= fits[1] <= fits[0]  # each count's starts include the fewer's
    assert fits[2] < fits[0]
