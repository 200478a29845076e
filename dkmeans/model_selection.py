"""Choosing k with no human in the loop: :func:`select_k`, :class:`KSelection`, and how
sure the choice is, :class:`KConfidence`."""

from __future__ import annotations

from ._engine.confidence import STABILITY_THRESHOLD, KConfidence, kneedle
from ._engine.selection import CRITERIA, KSelection, select_into
from ._engine.validation import as_input
from .cluster import KMeans

__all__ = ["CRITERIA", "STABILITY_THRESHOLD", "KConfidence", "KSelection", "kneedle", "select_k"]


def select_k(
    X,
    k_range=range(2, 16),
    *,
    criterion="silhouette",
    sample_size=10_000,
    sweep_sample_size=None,
    n_init="auto",
    random_state=None,
    sample_weight=None,
    **kmeans_params,
) -> KSelection:
    """Fit k-means for every k in ``k_range`` together, and choose k by a criterion.

    All candidate k are fitted in LOCKSTEP: every data pass serves every k still
    running, first through seeding (each k's own k-means|| rounds share the
    ``init_rounds + 1`` passes), then through Lloyd.  With an int ``random_state``
    each k's model is exactly ``KMeans(k, random_state=random_state).fit(X)``, and a
    streamed store is read as often as by the longest of those fits plus two, not
    the sum over k.  The two extra passes score every k (per-cluster moments,
    simplified silhouette, the silhouette sample; then Davies-Bouldin's distances and
    the squared-Euclidean silhouette); the chosen model's label pass is that of its
    own fit.

    Every selection also says how sure it is (``KSelection.confidence``): the k each
    criterion prefers (``preferred``, the elbow included), the stability of the chosen
    k (``stability``: the adjusted Rand index between two fits of it on disjoint
    halves of the silhouette sample, both labelling the whole sample; in memory, no
    extra pass), and a level, ``"low"`` when the elbow or most other criteria prefer
    another k or the stability is below 0.8 (see :class:`KConfidence`).

    Data streamed from its store (not kept in memory) is swept on a row sample
    instead (``fit_sample``, see :class:`KMeans`): one pass draws the sample with the
    data's moments, the sweep, its scores and the choice of k run on the sample in
    memory, and only the chosen k is polished with Lloyd passes on all rows, then
    labelled: about four reads of the store whatever ``k_range`` is.  The table then
    describes the sample.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
    k_range : iterable of int, default=range(2, 16)
        Candidate numbers of clusters (each at least 2).
    criterion : {"silhouette", "stratified_silhouette", "davies_bouldin", \
"calinski_harabasz", "simplified_silhouette", "elbow"}, default="silhouette"
        ``"silhouette"`` is the exact Euclidean silhouette of a uniform row sample of
        ``sample_size`` rows (the same rows for every k); larger is better, as for
        Calinski-Harabasz and the simplified silhouette; smaller Davies-Bouldin is better.
        ``"stratified_silhouette"``: each cluster weighs the same (a uniform sample
        under-weights small clusters): per cluster, up to ``sample_size // k`` of the
        silhouette sample's rows (a uniform draw within the cluster), their silhouette
        against those rows, averaged per cluster and then over the clusters; larger is
        better.  ``"elbow"``: the knee of inertia against k by Kneedle
        (:func:`kneedle`; needs at least 3 ks).
    sample_size : int, default=10000
        Rows in the silhouette sample (all rows if fewer).
    sweep_sample_size : int, optional
        Deprecated: ``fit_sample``.
    n_init : "auto" or int, default="auto"
        Initialisations per k (``"auto"``: 1, or 10 for ``init="random"``).
    random_state : int, Generator or None
    sample_weight : array-like or dask array of shape (n_samples,), optional
        Counts as repeated rows in the fits, inertia, Davies-Bouldin,
        Calinski-Harabasz and the simplified silhouette; the silhouette sample is
        uniform over rows.
    **kmeans_params
        Other :class:`KMeans` parameters (``init``, ``max_iter``, ``tol``,
        ``oversampling_factor``, ``init_rounds``, ``persist``, ``verbose``,
        ``fit_sample``, ``compute_labels``).

    Returns
    -------
    KSelection

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from dkmeans import select_k
    >>> X, _ = make_blobs(600, centers=4, cluster_std=0.5, random_state=0)
    >>> sel = select_k(X, range(2, 8), random_state=0)
    >>> sel.best_k, sel.best_model.cluster_centers_.shape
    (4, (4, 2))
    """
    if sweep_sample_size is not None:
        import warnings

        warnings.warn(
            "select_k(sweep_sample_size=N) is deprecated: the sweep runs on the fit sample; "
            "use fit_sample=N.",
            FutureWarning,
            stacklevel=2,
        )
        kmeans_params.setdefault("fit_sample", sweep_sample_size)
    return select_into(
        None, as_input(X), k_range, estimator=KMeans, criterion=criterion, sample_size=sample_size,
        n_init=n_init, random_state=random_state,
        sample_weight=sample_weight, kmeans_params=kmeans_params,
    )  # fmt: skip
