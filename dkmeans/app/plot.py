"""Plots of a clustering: k selection, silhouettes, a 2-D scatter, the centroid heatmap.

Every function returns a ``matplotlib.figure.Figure``; :func:`save_plots` writes
them all as PNG files (the CLI's ``--plots DIR``).  Data-sized inputs are sampled.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._engine.validation import unwrap
from ..metrics import sample_silhouette

__all__ = [
    "plot_centroid_heatmap",
    "plot_k_selection",
    "plot_scatter",
    "plot_silhouette",
    "save_plots",
]


def plot_k_selection(selection):
    """Elbow (inertia) and the quality criteria against k (see ``KSelection.plot``)."""
    return selection.plot()


def plot_silhouette(X, labels, *, sample_size: int = 2000, cluster_ids=None, random_state=0):
    """Per-cluster silhouette of a stratified row sample (one bar per sampled row).

    Parameters
    ----------
    X : array-like or dask array of shape (n_samples, n_features)
    labels : array-like or dask array of shape (n_samples,)
    sample_size : int, default=2000
    cluster_ids : sequence of int, optional
        Names shown for the clusters, in the order of their sorted label values.
    """
    import matplotlib.pyplot as plt

    n = int(np.shape(labels)[0])
    s = sample_silhouette(X, labels, min(sample_size, n), stratify=True,
                          random_state=random_state)  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    y = 0
    ks = np.unique(s.labels)
    colors = plt.cm.tab20(np.linspace(0, 1, max(len(ks), 2)))
    for c, color in zip(ks, colors, strict=False):
        vals = np.sort(s.values[s.labels == c])
        ax.fill_betweenx(np.arange(y, y + vals.shape[0]), 0, vals, color=color)
        name = cluster_ids[c] if cluster_ids is not None else c
        ax.text(-0.05, y + vals.shape[0] / 2, str(name), ha="right", va="center")
        y += vals.shape[0] + 10
    ax.axvline(s.score, color="black", linestyle="--", label=f"score {s.score:.3f}")
    ax.set(xlabel="silhouette", ylabel="sampled rows by cluster", yticks=[],
           title="Silhouette (stratified sample)")  # fmt: skip
    ax.legend(loc="lower right")
    return fig


def _sample_rows(X, labels, size: int, random_state) -> tuple[np.ndarray, np.ndarray]:
    n = int(X.shape[0])
    rng = np.random.default_rng(random_state)
    index = np.sort(rng.choice(n, size=min(size, n), replace=False))
    rows = np.asarray(X[index])
    lab = np.asarray(labels[index])
    return rows, lab


def plot_scatter(X, labels, *, sample_size: int = 5000, random_state=0):
    """A uniform row sample on its first two principal axes, coloured by cluster.

    X is projected on the sample's own two leading principal axes (already the PCA
    scores when X is the output of :class:`dkmeans.PCA`, up to sign).
    """
    import matplotlib.pyplot as plt

    data = X.data if hasattr(X, "dims") else X
    lab = unwrap(labels)
    rows, lab = _sample_rows(data, lab, sample_size, random_state)
    centred = rows.astype(np.float64) - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centred[:, 0], np.zeros(len(rows))]
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab20", s=4, alpha=0.7)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=f"{len(rows):,} sampled rows by cluster")
    fig.colorbar(sc, ax=ax, label="cluster")
    return fig


def plot_centroid_heatmap(archetypes):
    """Each cluster's mean of every feature, in global standard deviations from the mean."""
    import matplotlib.pyplot as plt

    z = archetypes.z
    fig, ax = plt.subplots(
        figsize=(1.0 + 0.6 * z.shape[1], 1.5 + 0.4 * z.shape[0]), constrained_layout=True
    )
    lim = max(float(np.abs(z.to_numpy()).max()), 1e-9)
    im = ax.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(z.shape[1]), z.columns, rotation=45, ha="right")
    ax.set_yticks(range(z.shape[0]), [str(c) for c in z.index])
    ax.set(ylabel="cluster", title="Centroids (standardised difference from the mean)")
    fig.colorbar(im, ax=ax, label="standard deviations")
    return fig


def save_plots(folder: str | os.PathLike, result, data, *, random_state=0) -> list[str]:
    """Write the plots of a :class:`dkmeans.pipeline.JobResult` as PNG files.

    ``data`` is what k-means was fitted on (scaled and reduced).  Returns the paths.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    km = result.kmeans
    ids = getattr(km, "cluster_ids_", None)
    X = unwrap(data)
    labels = km.predict(X)  # the fit's rows: in memory, or a sample
    figures = {
        # the metrics encode labels (IDs too) by their sorted values: bar c is ids[c]
        "silhouette.png": plot_silhouette(X, labels, cluster_ids=ids, random_state=random_state),
        "scatter.png": plot_scatter(X, labels, random_state=random_state),
        "centroids.png": plot_centroid_heatmap(result.archetypes),
    }
    if result.selection is not None:
        figures["k_selection.png"] = plot_k_selection(result.selection)
    paths = []
    for name, fig in figures.items():
        path = folder / name
        tmp = folder / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
        plt.close(fig)
        paths.append(str(path))
    return paths
