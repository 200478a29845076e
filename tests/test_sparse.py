"""scipy.sparse input: CSR in memory and dask arrays of CSR blocks.

KMeans matches scikit-learn on the same sparse matrix from the same initial centres;
the metrics match sklearn.metrics; inference on sparse rows equals inference on the
dense rows; and the sparse chunk kernels match the naive NumPy reference on the
densified block.
"""

import functools

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.cluster
import sklearn.decomposition
import sklearn.metrics
import sklearn.preprocessing
from hypothesis import given
from hypothesis import strategies as st

import dkmeans
from dkmeans import metrics as M
from dkmeans._engine import kernels as K
from dkmeans._engine import reductions as R
from dkmeans.exceptions import InputError, InputTypeError

from ._reference import lloyd_partials, moments, sq_dists

N, D, K_TRUE = 2000, 50, 4


@functools.cache
def _planted(dtype=np.float64):
    """A 5%-dense random matrix plus five features of weight 1-2 per planted cluster."""
    rng = np.random.default_rng(0)
    y = rng.integers(K_TRUE, size=N)
    noise = sp.random(N, D, density=0.05, random_state=0, format="csr")
    rows = np.repeat(np.arange(N), 5)
    cols = (y[:, None] * 5 + np.arange(5)).ravel()
    signal = sp.csr_matrix((rng.uniform(1, 2, N * 5), (rows, cols)), shape=(N, D))
    return (noise + signal).tocsr().astype(dtype), y


def _container(X, kind):
    if kind == "csr_matrix":
        return X
    if kind == "csr_array":
        return sp.csr_array(X)
    return da.from_array(X, chunks=(300, -1), asarray=False)  # "dask": CSR blocks


def _dense(X, kind):
    """The same data dense, in the same blocks (seeding draws per block)."""
    dense = X.toarray()
    return da.from_array(dense, chunks=(300, -1)) if kind == "dask" else dense


def _init(X, y):
    """One row of each planted cluster, nudged, so Lloyd takes a few iterations."""
    rows = [np.flatnonzero(y == j)[:3] for j in range(K_TRUE)]
    return np.vstack([X[r].toarray().mean(axis=0) for r in rows])


CONTAINERS = ["csr_matrix", "csr_array", "dask"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", CONTAINERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_matches_sklearn_from_the_same_init(kind, dtype, weighted):
    X, y = _planted(dtype)
    init = _init(X, y).astype(dtype)
    w = np.random.default_rng(1).uniform(0.5, 2, N) if weighted else None
    ours = dkmeans.KMeans(K_TRUE, init=init, n_init=1).fit(_container(X, kind), sample_weight=w)
    ref = sklearn.cluster.KMeans(K_TRUE, init=init, n_init=1, algorithm="lloyd")
    ref.fit(X, sample_weight=w)
    rtol = 1e-6 if dtype == np.float32 else 1e-10
    assert ours.cluster_centers_.dtype == dtype
    assert isinstance(ours.cluster_centers_, np.ndarray)  # dense (k, d), as scikit-learn
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(np.asarray(ours.labels_), ref.labels_)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=rtol)
    assert ours.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("init", ["k-means||", "k-means++", "random"])
def test_every_init_finds_the_planted_clusters(init):
    X, y = _planted()
    ours = dkmeans.KMeans(K_TRUE, init=init, random_state=0).fit(_container(X, "dask"))
    labels = np.asarray(ours.labels_)
    assert sklearn.metrics.adjusted_rand_score(y, labels) == 1.0
    dense = dkmeans.KMeans(K_TRUE, init=init, random_state=0).fit(_dense(X, "dask"))
    np.testing.assert_allclose(ours.cluster_centers_, dense.cluster_centers_, rtol=1e-9)
    np.testing.assert_array_equal(labels, np.asarray(dense.labels_))


@pytest.mark.parametrize("kind", CONTAINERS)
def test_inference_on_sparse_rows_equals_dense(kind):
    X, _ = _planted()
    Xs, Xd = _container(X, kind), X.toarray()
    model = dkmeans.KMeans(K_TRUE, random_state=0).fit(Xs)
    labels, dist = model.predict(Xs), model.transform(Xs)
    if kind == "dask":
        assert isinstance(labels, da.Array) and isinstance(dist, da.Array)
        labels, dist = labels.compute(), dist.compute()
    assert isinstance(dist, np.ndarray) and dist.shape == (N, K_TRUE)
    np.testing.assert_array_equal(labels, model.predict(Xd))
    np.testing.assert_allclose(dist, model.transform(Xd), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.score(Xs), model.score(Xd), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(model.labels_), model.predict(Xd))
    fitted = dkmeans.KMeans(K_TRUE, random_state=0).fit_predict(Xs)
    np.testing.assert_array_equal(np.asarray(fitted), np.asarray(model.labels_))


def test_cosine_on_sparse_equals_cosine_on_dense():
    X, _ = _planted()
    ours = dkmeans.KMeans(K_TRUE, metric="cosine", random_state=0).fit(_container(X, "dask"))
    dense = dkmeans.KMeans(K_TRUE, metric="cosine", random_state=0).fit(_dense(X, "dask"))
    np.testing.assert_array_equal(np.asarray(ours.labels_), np.asarray(dense.labels_))
    np.testing.assert_allclose(ours.cluster_centers_, dense.cluster_centers_, rtol=1e-9)


def test_a_fit_sample_of_sparse_rows_stays_sparse_and_polishes_on_all_rows(monkeypatch):
    X, y = _planted()
    sampled = []
    real = dkmeans._engine.driver.sample_rows

    def spy(gathered, client):
        sampled.append(gathered.sample.rows)
        return real(gathered, client)

    monkeypatch.setattr(dkmeans._engine.driver, "sample_rows", spy)
    model = dkmeans.KMeans(K_TRUE, random_state=0, fit_sample=600, persist=False)
    model.fit(_container(X, "dask"))
    assert sp.issparse(sampled[0]) and sampled[0].shape == (600, D)
    assert model.fit_sample_size_ == 600
    assert sklearn.metrics.adjusted_rand_score(y, np.asarray(model.labels_)) == 1.0


def test_no_block_is_made_dense(monkeypatch):
    """Fits, inference and the one-pass metrics densify a few rows at most (centre
    candidates, far rows), never a block."""
    X, _ = _planted()
    for cls in (sp.csr_matrix, sp.csr_array):

        def guarded(self, *args, real=cls.toarray, **kwargs):
            assert self.shape[0] <= 64, f"a {self.shape} sparse block was made dense"
            return real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", guarded)
    Xs = _container(X, "dask")
    for init in ("k-means||", "k-means++", "random"):
        model = dkmeans.KMeans(K_TRUE, init=init, random_state=0).fit(Xs)
    labels = model.predict(Xs).compute()
    model.transform(Xs).compute()
    model.score(Xs)
    M.calinski_harabasz_score(Xs, labels)
    M.davies_bouldin_score(Xs, labels)
    M.simplified_silhouette_score(Xs, model.cluster_centers_)
    M.silhouette_score(Xs, labels, method="sqeuclidean-exact")
    with pytest.raises(AssertionError, match="made dense"):  # the guard does guard
        Xs.blocks[0].compute().toarray()


@pytest.mark.parametrize("kind", ["csr_matrix", "dask"])
def test_metrics_match_sklearn(kind):
    X, _ = _planted()
    labels = dkmeans.KMeans(K_TRUE + 1, random_state=0).fit(X).labels_  # one split cluster
    Xs, Xd = _container(X, kind), _dense(X, kind)
    sk, dense = sklearn.metrics, X.toarray()
    np.testing.assert_allclose(M.silhouette_score(Xs, labels), sk.silhouette_score(X, labels),
                               rtol=1e-10)  # fmt: skip
    np.testing.assert_allclose(M.davies_bouldin_score(Xs, labels),
                               sk.davies_bouldin_score(dense, labels), rtol=1e-10)  # fmt: skip
    np.testing.assert_allclose(M.calinski_harabasz_score(Xs, labels),
                               sk.calinski_harabasz_score(dense, labels), rtol=1e-10)  # fmt: skip
    # the sample's rows are those the dense data draws, so its score is the same
    for stratify in (False, True):
        sampled = M.silhouette_score(Xs, labels, sample_size=500, stratify=stratify,
                                     random_state=0)  # fmt: skip
        same = M.silhouette_score(Xd, labels, sample_size=500, stratify=stratify,
                                  random_state=0)  # fmt: skip
        np.testing.assert_allclose(sampled, same, rtol=1e-10)
    centers = dkmeans.KMeans(K_TRUE, random_state=0).fit(X).cluster_centers_
    np.testing.assert_allclose(M.simplified_silhouette_score(Xs, centers),
                               M.simplified_silhouette_score(Xd, centers), rtol=1e-10)  # fmt: skip
    np.testing.assert_allclose(M.silhouette_score(Xs, labels, method="sqeuclidean-exact"),
                               M.silhouette_score(Xd, labels, method="sqeuclidean-exact"),
                               rtol=1e-10)  # fmt: skip


@pytest.mark.parametrize("kind", ["csr_matrix", "dask"])
def test_select_k_chooses_the_planted_k(kind):
    X, _ = _planted()
    sel = dkmeans.select_k(_container(X, kind), range(2, 7), random_state=0, sample_size=1000)
    assert sel.best_k == K_TRUE
    assert list(sel.table["k"]) == [2, 3, 4, 5, 6]
    dense = dkmeans.select_k(_dense(X, kind), range(2, 7), random_state=0, sample_size=1000)
    np.testing.assert_allclose(sel.table["inertia"], dense.table["inertia"], rtol=1e-9)
    np.testing.assert_allclose(sel.table["silhouette"], dense.table["silhouette"], rtol=1e-9)


def test_select_k_sweeps_a_sparse_fit_sample():
    X, _ = _planted()
    sel = dkmeans.select_k(_container(X, "dask"), range(2, 7), random_state=0, fit_sample=800,
                           persist=False, sample_size=500)  # fmt: skip
    assert sel.best_k == K_TRUE
    assert sel.best_model.fit_sample_size_ == 800


# --------------------------------------------------------------------------- input


def test_dtypes_formats_and_duplicates_are_normalised():
    X, _ = _planted()
    ints = sp.csr_matrix(np.rint(X.toarray() * 2))
    assert dkmeans.KMeans(2, random_state=0).fit(ints).cluster_centers_.dtype == np.float64
    assert dkmeans.KMeans(2, random_state=0).fit(X.astype(np.float32)).cluster_centers_.dtype \
        == np.float32  # fmt: skip
    ref = dkmeans.KMeans(K_TRUE, random_state=0).fit(X)
    for other in (X.tocsc(), X.tocoo()):
        got = dkmeans.KMeans(K_TRUE, random_state=0).fit(other)
        np.testing.assert_allclose(got.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    blocks = da.from_array(X.tocsc(), chunks=(300, 20), asarray=False)  # CSC, split features
    got = dkmeans.KMeans(K_TRUE, random_state=0).fit(blocks)
    ref = dkmeans.KMeans(K_TRUE, random_state=0).fit(_container(X, "dask"))
    np.testing.assert_allclose(got.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    ref = dkmeans.KMeans(K_TRUE, random_state=0).fit(X)
    # every entry stored twice, at half its value: the same matrix, not canonical
    coo = X.tocoo()
    twice = sp.csr_matrix(
        (np.concatenate([coo.data, coo.data]) / 2,
         (np.concatenate([coo.row, coo.row]), np.concatenate([coo.col, coo.col]))),
        shape=X.shape,
    )  # fmt: skip
    twice.has_canonical_format = False
    copy = twice.copy()
    got = dkmeans.KMeans(K_TRUE, random_state=0).fit(twice)
    np.testing.assert_allclose(got.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
    assert twice.nnz == copy.nnz  # the caller's matrix is left as it was


def test_nonfinite_and_empty_sparse_input_raise():
    X, _ = _planted()
    bad = X.copy()
    bad.data[[3, 7]] = [np.nan, np.inf]
    with pytest.raises(InputError, match=r"NaN or infinity \(2 value"):
        dkmeans.KMeans(2).fit(bad)
    with pytest.raises(InputError, match="NaN or infinity"):
        dkmeans.KMeans(2).fit(_container(bad, "dask"))
    with pytest.raises(InputError, match="empty"):
        dkmeans.KMeans(2).fit(sp.csr_matrix((0, 5)))


def test_what_does_not_take_sparse_says_so():
    class PydataSparse:  # the shape of a pydata `sparse` array, which is not scipy's
        __module__ = "sparse._coo.core"
        shape, ndim, dtype = (4, 2), 2, np.dtype(float)

    with pytest.raises(InputTypeError, match=r"scipy\.sparse CSR"):
        dkmeans.KMeans(2).fit(PydataSparse())


def test_xarray_over_sparse_blocks_keeps_its_coordinate():
    xr = pytest.importorskip("xarray")
    X, y = _planted()
    arr = xr.DataArray(_container(X, "dask"), dims=("cell", "feature"),
                       coords={"cell": np.arange(N) * 10})  # fmt: skip
    labels = dkmeans.KMeans(K_TRUE, random_state=0).fit(arr).labels_
    assert labels.dims == ("cell",) and labels["cell"][1] == 10
    assert sklearn.metrics.adjusted_rand_score(y, labels.values) == 1.0


# --------------------------------------------------------------------------- kernels


@st.composite
def sparse_problems(draw):
    n = draw(st.integers(1, 200))
    d = draw(st.integers(1, 12))
    k = draw(st.integers(1, 6))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=rng,
                  data_rvs=lambda m: rng.normal(size=m) * 3 + 1)  # fmt: skip
    if draw(st.booleans()):
        X = sp.csr_array(X)
    C = rng.normal(size=(k, d))
    w = rng.uniform(0, 3, size=n) if draw(st.booleans()) else None
    shift = draw(st.sampled_from(["zero", "mean", "row"]))
    dense = X.toarray()
    s = {"zero": np.zeros(d), "mean": dense.mean(axis=0), "row": dense[0]}[shift]
    return X, dense, C, w, s


@given(sparse_problems())
def test_sparse_lloyd_step_matches_the_dense_reference(problem):
    X, dense, C, w, shift = problem
    cs = K.prepare_centers(C, shift, X.dtype)
    (got,), mom = R.lloyd_chunk(X, w, [cs], shift, n_far=3, with_moments=True)
    labels, sums, counts, cost = lloyd_partials(dense, C, w)
    np.testing.assert_allclose(got.counts, counts, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got.sums + np.outer(counts, shift), sums, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(got.cost, cost, rtol=1e-9, atol=1e-8)
    d_ref = sq_dists(dense, C)[np.arange(len(dense)), labels]
    np.testing.assert_allclose(got.far_dist, np.sort(d_ref)[::-1][:3], rtol=1e-9, atol=1e-8)
    # the far rows are dense copies of rows at those distances from their centres
    far_d = sq_dists(got.far_rows, C)[np.arange(len(got.far_rows)), got.far_label]
    np.testing.assert_allclose(far_d, got.far_dist, rtol=1e-9, atol=1e-8)
    assert all((dense == row).all(axis=1).any() for row in got.far_rows)
    np.testing.assert_array_equal(K.assign_labels(X, cs, shift)[0], labels)
    np.testing.assert_allclose(K.exact_cost(X, C, labels, w), cost, rtol=1e-9, atol=1e-8)
    cost_min, nearest = K.min_cost_update(X, None, None, cs, shift, 0)
    np.testing.assert_array_equal(nearest, labels)
    np.testing.assert_allclose(cost_min, d_ref, rtol=1e-9, atol=1e-8)
    mean, m2 = moments(dense)
    assert mom.count == len(dense) and mom.n_nonfinite == 0
    np.testing.assert_allclose(mom.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mom.m2, m2, rtol=1e-9, atol=1e-9)
    if w is not None and w.sum() > 0:
        wm = R.weighted_moments_chunk(X, w)
        w_mean = np.average(dense, axis=0, weights=w)
        np.testing.assert_allclose(wm.count, w.sum(), rtol=1e-12)
        np.testing.assert_allclose(wm.mean, w_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(wm.m2, w @ (dense - w_mean) ** 2, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- transformers


@functools.cache
def _low_rank():
    """Sparse rows near a rank-3 structure (TF-IDF-like, non-negative, a clear spectrum)."""
    rng = np.random.default_rng(2)
    topics = sp.random(3, D, density=0.3, random_state=2).toarray() * 4
    weights = rng.dirichlet(np.ones(3) * 0.3, size=N)
    noise = sp.random(N, D, density=0.03, random_state=3)
    X = sp.csr_matrix(weights @ topics * (rng.random((N, D)) < 0.5)) + noise
    return X.tocsr()


@pytest.mark.parametrize("kind", ["csr_matrix", "dask"])
def test_standard_scaler_without_mean_matches_sklearn_and_stays_sparse(kind):
    X, _ = _planted()
    ours = dkmeans.StandardScaler(with_mean=False).fit(_container(X, kind))
    ref = sklearn.preprocessing.StandardScaler(with_mean=False).fit(X)
    np.testing.assert_allclose(ours.scale_, ref.scale_, rtol=1e-12)
    np.testing.assert_allclose(ours.var_, ref.var_, rtol=1e-12)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    out = ours.transform(_container(X, kind))
    out = out.compute() if kind == "dask" else out
    assert sp.issparse(out) and out.nnz == X.nnz
    np.testing.assert_allclose(out.toarray(), ref.transform(X).toarray(), rtol=1e-12)
    back = ours.inverse_transform(out)
    np.testing.assert_allclose(back.toarray(), X.toarray(), rtol=1e-12, atol=1e-15)


def test_centring_sparse_data_raises_and_names_the_fix():
    X, _ = _planted()
    with pytest.raises(InputError, match=r"sparse.*with_mean=False"):
        dkmeans.StandardScaler().fit(X)
    fitted = dkmeans.StandardScaler().fit(X.toarray())
    with pytest.raises(InputError, match=r"sparse.*with_mean=False"):
        fitted.transform(X)
    with pytest.raises(InputTypeError, match=r"sparse.*TruncatedSVD"):
        dkmeans.PCA(3, svd_solver="tsqr").fit(X)


@pytest.mark.parametrize("kind", ["csr_matrix", "dask"])
def test_pca_on_sparse_matches_sklearn(kind):
    X = _low_rank()
    ours = dkmeans.PCA(4, svd_solver="covariance").fit(_container(X, kind))
    ref = sklearn.decomposition.PCA(4, svd_solver="covariance_eigh").fit(X)
    np.testing.assert_allclose(ours.components_, ref.components_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-8, atol=1e-10)
    fast = dkmeans.PCA(4, svd_solver="randomized", random_state=0).fit(_container(X, kind))
    # the rank-3 structure exactly; the 4th component is in the noise (approximate)
    np.testing.assert_allclose(fast.explained_variance_[:3], ref.explained_variance_[:3],
                               rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("kind", ["csr_matrix", "dask", "dense"])
def test_truncated_svd_matches_sklearn(kind):
    X = _low_rank()
    data = X.toarray() if kind == "dense" else _container(X, kind)
    ours = dkmeans.TruncatedSVD(4, algorithm="covariance").fit(data)
    ref = sklearn.decomposition.TruncatedSVD(4, algorithm="arpack", random_state=0).fit(X)
    # signs as scikit-learn's (svd_flip), so no sign is left to compare "up to"
    np.testing.assert_allclose(ours.components_, ref.components_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-8)  # fmt: skip
    assert ours.n_passes_ == 1
    Z = ours.transform(data)
    Z = Z.compute() if kind == "dask" else Z
    np.testing.assert_allclose(Z, ref.transform(X), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.inverse_transform(Z), ref.inverse_transform(Z), rtol=1e-8,
                               atol=1e-10)  # fmt: skip
    fast = dkmeans.TruncatedSVD(4, algorithm="randomized", random_state=0).fit(data)
    assert fast.n_passes_ == 6
    np.testing.assert_allclose(fast.singular_values_, ref.singular_values_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(fast.components_ @ ref.components_.T), np.eye(4),
                               atol=1e-4)  # fmt: skip


def test_cluster_profiles_of_sparse_rows_equal_the_dense_ones():
    X, y = _planted()
    w = np.random.default_rng(4).uniform(0.5, 2, N)
    ours = dkmeans.profile_clusters(_container(X, "dask"), y, sample_weight=w)
    dense = dkmeans.profile_clusters(X.toarray(), y, sample_weight=w)
    np.testing.assert_allclose(ours.means.values, dense.means.values, rtol=1e-12)
    np.testing.assert_allclose(ours.stds.values, dense.stds.values, rtol=1e-9, atol=1e-12)


def test_a_callable_init_gets_the_sparse_matrix_and_may_return_sparse_rows():
    X, y = _planted()
    seen = []

    def first_of_each(data, n_clusters, random_state):
        seen.append(data)
        return data[[int(np.flatnonzero(y == j)[0]) for j in range(n_clusters)]]

    model = dkmeans.KMeans(K_TRUE, init=first_of_each, n_init=1).fit(X)
    assert sp.issparse(seen[0]) and seen[0].shape == X.shape
    assert sklearn.metrics.adjusted_rand_score(y, model.labels_) == 1.0


def test_models_fitted_on_sparse_data_save_and_load(tmp_path):
    X = _low_rank()
    km = dkmeans.KMeans(3, random_state=0).fit(X)
    fingerprint = dkmeans.persistence.data_fingerprint(X)
    same = dkmeans.persistence.data_fingerprint(_container(X, "dask"))
    assert fingerprint["sha256"] == same["sha256"]  # the same rows in other blocks
    assert fingerprint["sha256"] != dkmeans.persistence.data_fingerprint(X * 2)["sha256"]
    svd = dkmeans.TruncatedSVD(3).fit(X)
    for model, name in ((km, "km"), (svd, "svd")):
        dkmeans.save(model, tmp_path / name, fingerprint=fingerprint)
        back = dkmeans.load(tmp_path / name)
        np.testing.assert_array_equal(back.transform(X), model.transform(X))


@pytest.mark.parametrize("kind", ["csr_matrix", "dask"])
def test_minibatch_on_sparse_matches_dense(kind):
    """MiniBatchKMeans takes sparse X (fit and partial_fit) with the same centres as on
    the dense equivalent."""
    X, truth = _planted()
    kw = {"n_clusters": K_TRUE, "batch_size": 256, "random_state": 0, "max_iter": 5}
    on_sparse = dkmeans.MiniBatchKMeans(**kw).fit(_container(X, kind))
    on_dense = dkmeans.MiniBatchKMeans(**kw).fit(_dense(X, kind))
    np.testing.assert_allclose(on_sparse.cluster_centers_, on_dense.cluster_centers_, atol=1e-8)
    np.testing.assert_array_equal(np.asarray(on_sparse.labels_), np.asarray(on_dense.labels_))
    assert sklearn.metrics.adjusted_rand_score(truth, np.asarray(on_sparse.labels_)) > 0.9
    stream, reference = dkmeans.MiniBatchKMeans(**kw), dkmeans.MiniBatchKMeans(**kw)
    dense = X.toarray()
    for start in range(0, X.shape[0], 500):
        stream.partial_fit(X[start : start + 500])
        reference.partial_fit(dense[start : start + 500])
    np.testing.assert_allclose(stream.cluster_centers_, reference.cluster_centers_, atol=1e-8)
    np.testing.assert_array_equal(stream.labels_, reference.labels_)
