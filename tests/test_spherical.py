"""metric="cosine": spherical k-means against a NumPy reference."""

import dask.array as da
import numpy as np
import pytest

from dkmeans import KMeans, load, save, select_k


def _directions(n=4000, k=5, d=6, seed=0):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(k, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    labels = rng.integers(k, size=n)
    scale = rng.uniform(0.1, 100, size=(n, 1))  # lengths carry no information
    return (D[labels] + 0.15 * rng.normal(size=(n, d))) * scale, labels


def _reference(X, init, n_iter):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = init / np.linalg.norm(init, axis=1, keepdims=True)
    for _ in range(n_iter):
        labels = (U @ C.T).argmax(axis=1)
        sums = np.array([U[labels == j].sum(axis=0) for j in range(len(C))])
        C = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    labels = (U @ C.T).argmax(axis=1)
    return C, labels, float((1 - (U * C[labels]).sum(axis=1)).sum())


@pytest.mark.parametrize("chunks", [None, 700])
def test_matches_a_numpy_spherical_kmeans(chunks):
    X, _ = _directions()
    Xin = X if chunks is None else da.from_array(X, chunks=(chunks, -1))
    km = KMeans(5, init=X[:5], n_init=1, metric="cosine", tol=0, max_iter=8).fit(Xin)
    C, labels, inertia = _reference(X, X[:5], km.n_iter_)
    np.testing.assert_allclose(km.cluster_centers_, C, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0)
    np.testing.assert_array_equal(np.asarray(km.labels_), labels)
    assert km.inertia_ == pytest.approx(inertia, rel=1e-10)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(km.transform(Xin)), 1 - U @ C.T, atol=1e-12)
    assert km.score(Xin) == pytest.approx(-inertia, rel=1e-10)


def test_row_lengths_do_not_matter():
    X, _ = _directions(seed=1)
    rescaled = X * np.random.default_rng(2).uniform(0.01, 1000, size=(len(X), 1))
    a = KMeans(5, metric="cosine", random_state=0).fit(X)
    b = KMeans(5, metric="cosine", random_state=0).fit(rescaled)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, atol=1e-12)


def test_select_k_and_round_trip(tmp_path):
    X, _ = _directions(n=3000, k=4, seed=3)
    sel = select_k(X, range(2, 7), metric="cosine", random_state=0)
    assert sel.best_k == 4
    km = sel.best_model
    alone = KMeans(4, metric="cosine", random_state=0).fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, alone.cluster_centers_)
    save(km, tmp_path / "m")
    np.testing.assert_array_equal(load(tmp_path / "m").predict(X), km.predict(X))


def test_zero_rows_are_refused():
    X, _ = _directions(n=100)
    X[7] = 0
    with pytest.raises(ValueError, match="all zeros and have no direction"):
        KMeans(3, metric="cosine").fit(X)
    with pytest.raises(ValueError, match="metric='manhattan'"):
        KMeans(3, metric="manhattan").fit(X)
