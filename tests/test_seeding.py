"""k-means|| internals: the cut-draw fallback and candidate weighting."""

import dask
import dask.array as da
import numpy as np

from dkmeans import _init
from dkmeans._parallel import RowBlocks

from .conftest import blobs


def _rows(X, chunks):
    return RowBlocks(da.from_array(X, chunks=(chunks, -1)))


def test_cut_draws_are_gathered_and_give_the_same_candidates():
    """With room for only 2 keys a block, the fallback must recover the exact sample."""
    X, _, _ = blobs(n=2000, d=3, k=8, std=1.0, seed=9)
    full = _init.kmeans_parallel(_rows(X, 250), 8, np.random.default_rng(0), init_rounds=3)
    cut_rows = _rows(X, 250)
    cut = _init.kmeans_parallel(cut_rows, 8, np.random.default_rng(0), init_rounds=3, _n_keep=2)
    np.testing.assert_array_equal(cut.centers, full.centers)
    # 3 rounds + weights pass + at least one gather pass
    assert cut_rows.n_passes >= 5


def test_candidate_weights_sum_to_total_weight():
    X, _, _ = blobs(n=1000, d=2, k=4, seed=1)
    w = np.random.default_rng(0).uniform(0, 2, size=1000)
    rows = RowBlocks(da.from_array(X, chunks=(200, -1)), da.from_array(w, chunks=200))
    rng = np.random.default_rng(0)
    c0 = rows.fetch_rows([rows.draw_row(rng)])
    state, draws, _mom = rows.seeding_pass(
        None, c0, c0[0], 0, scale=8.0, entropy=1, stage=1, draw="bernoulli", n_keep=30,
        with_moments=True, name="t",
    )  # fmt: skip
    new = draws.rows[draws.keys > draws.cost]
    weights = rows.candidate_weights_pass(state, new, c0[0], 1, 1 + len(new), "w")
    assert weights.shape == (1 + len(new),)
    np.testing.assert_allclose(weights.sum(), w.sum())
    # each candidate's weight is the weight of the rows nearest to it
    C = np.concatenate([c0, new])
    nearest = ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_allclose(weights, np.bincount(nearest, weights=w, minlength=len(C)))


def test_one_compute_per_lloyd_pass():
    from dkmeans._lloyd import lloyd

    X, _, _ = blobs(n=1000, d=3, k=3)
    rows = _rows(X, 100)
    computes = []

    def counting_get(dsk, keys, **kw):
        computes.append(1)
        return dask.threaded.get(dsk, keys, **kw)

    with dask.config.set(scheduler=counting_get):
        runs, _ = lloyd(rows, [X[:3]], max_iter=4, tol=0.0, moments=None)
    assert len(computes) == runs[0].n_iter == rows.n_passes
