"""Archetype profiles: what each cluster means, in the original features' units."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import dask.array as da
import numpy as np

from ._engine import cluster_stats as S
from ._engine.errors import InputError, ParameterError, UnknownNameError
from ._engine.parallel import RowBlocks, active_client, single_threaded_blas
from ._engine.validation import as_input, as_sample_weight, unwrap

__all__ = ["Archetypes", "profile_clusters"]


@dataclass
class Archetypes:
    """Per-cluster profiles over the original features (see :func:`profile_clusters`).

    Attributes
    ----------
    means, stds : pandas.DataFrame of shape (n_clusters, n_features)
        Mean and standard deviation of every feature in each cluster, in the
        features' own units.
    z : pandas.DataFrame of shape (n_clusters, n_features)
        Standardised difference from the global mean: ``(mean - global mean) /
        global std`` (0 for constant features).
    sizes : pandas.Series
        Rows (or summed sample weight) per cluster.
    score : pandas.Series or None
        The user's ranking score of each cluster.
    global_mean, global_std : pandas.Series
    top_n : int
        How many distinguishing features the table lists.
    """

    means: object
    stds: object
    z: object
    sizes: object
    score: object
    global_mean: object
    global_std: object
    top_n: int = 3

    @property
    def table(self):
        """One row per cluster, ranked: rank, size, share, score, the features that most
        set it apart, then every feature's mean."""
        import pandas as pd

        share = self.sizes / self.sizes.sum()
        order = self.score if self.score is not None else self.sizes
        rank = order.rank(ascending=False, method="first").astype(int)
        table = pd.DataFrame({"rank": rank, "size": self.sizes, "share": share})
        if self.score is not None:
            table["score"] = self.score
        table["distinctive"] = [self.distinctive(c) for c in self.z.index]
        table = table.join(self.means)
        return table.sort_values("rank")

    def distinctive(self, cluster) -> str:
        """The ``top_n`` features furthest from the global mean, in global standard
        deviations, e.g. ``churn_rate +1.8sd``."""
        z = self.z.loc[cluster]
        top = z.abs().sort_values(ascending=False, kind="stable").index[: self.top_n]
        return ", ".join(f"{f} {z[f]:+.1f}sd" for f in top)

    def to_markdown(self, digits: int = 3) -> str:
        """The table as a GitHub-flavoured Markdown table."""
        t = self.table.reset_index()
        cells = [[_fmt(v, digits) for v in row] for row in t.itertuples(index=False)]
        header = [str(c) for c in t.columns]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the table as CSV (written to a temporary name, then moved into place)."""
        replace_csv(self.table, path)

    def to_dict(self) -> dict:
        """The profile as plain lists (JSON-serialisable), for a saved model's metadata:
        cluster IDs, feature names, sizes, means, stds, global mean and std, score and
        rank.  :meth:`from_dict` rebuilds it."""
        return {
            "clusters": [int(c) for c in self.means.index],
            "features": [str(f) for f in self.means.columns],
            "sizes": _floats(self.sizes),
            "means": [_floats(row) for row in self.means.to_numpy()],
            "stds": [_floats(row) for row in self.stds.to_numpy()],
            "global_mean": _floats(self.global_mean),
            "global_std": _floats(self.global_std),
            "score": None if self.score is None else _floats(self.score),
            "rank": [int(r) for r in self.table["rank"].reindex(self.means.index)],
            "top_n": int(self.top_n),
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> Archetypes:
        """The profile :meth:`to_dict` wrote (its rank follows from the score or sizes).

        Raises
        ------
        InputError
            If ``doc`` lacks a field or its lists do not match the clusters and features.
        """
        import pandas as pd

        try:
            index = pd.Index(np.asarray(doc["clusters"], dtype=np.int64), name="cluster")
            names = [str(f) for f in doc["features"]]
            frame = partial(pd.DataFrame, index=index, columns=names, dtype=np.float64)
            means, stds = frame(doc["means"]), frame(doc["stds"])
            g_mean = pd.Series(doc["global_mean"], index=names, dtype=np.float64)
            g_std = pd.Series(doc["global_std"], index=names, dtype=np.float64)
            sizes = pd.Series(doc["sizes"], index=index, name="size", dtype=np.float64)
            score = doc.get("score")
            score = None if score is None else pd.Series(score, index=index, name="score",
                                                         dtype=np.float64)  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(
                f"Not an archetype profile written by Archetypes.to_dict ({err}); save the "
                "reference model again with this dkmeans."
            ) from err
        std = g_std.to_numpy()
        z = np.where(std > 0, (means.to_numpy() - g_mean.to_numpy()) / np.where(std > 0, std, 1), 0)
        return cls(means, stds, frame(z), sizes, score, g_mean, g_std, int(doc.get("top_n", 3)))


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64)]


def replace_csv(frame, path: str | os.PathLike) -> None:
    """``frame.to_csv`` under a temporary name beside ``path``, then moved into place,
    so a reader never sees a half-written file."""
    tmp = f"{os.fspath(path)}.tmp"
    frame.to_csv(tmp)
    os.replace(tmp, path)


def _fmt(value, digits: int) -> str:
    if isinstance(value, float | np.floating):
        if abs(value) >= 10**digits or float(value).is_integer():
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|")


def _score(score, means, z):
    """The user's ranking score: weights over standardised means, an expression over
    the means, or a callable of the means."""
    import pandas as pd

    if score is None:
        return None
    if isinstance(score, Mapping):
        unknown = sorted(set(score) - set(means.columns))
        if unknown:
            raise UnknownNameError(
                f"score weights name unknown features {unknown}; features are "
                f"{list(means.columns)}."
            )
        weights = pd.Series(score, dtype=np.float64)
        return (z[weights.index] * weights).sum(axis=1).rename("score")
    if isinstance(score, str):
        try:
            values = means.eval(score)
        except Exception as err:
            raise ParameterError(
                f"score expression {score!r} could not be evaluated over the feature means "
                f"({err}); use feature names, e.g. 'retention_30d * engagement_rate'."
            ) from err
        return pd.Series(np.asarray(values, dtype=np.float64), index=means.index, name="score")
    if isinstance(score, Callable):
        return pd.Series(np.asarray(score(means), dtype=np.float64), index=means.index,
                         name="score")  # fmt: skip
    raise ParameterError(
        "score must be a dict of feature weights, an expression string or a callable."
    )


def profile_clusters(
    X,
    labels,
    *,
    n_clusters: int | None = None,
    feature_names=None,
    cluster_ids=None,
    score=None,
    top_n: int = 3,
    sample_weight=None,
) -> Archetypes:
    """Profile clusters over the ORIGINAL features in one pass over the data.

    Parameters
    ----------
    X : array-like, dask array, xarray.DataArray, zarr.Array or path of shape \
(n_samples, n_features)
        The records in their own units (not scaled, not PCA-reduced).
    labels : array-like or dask array of shape (n_samples,)
        Cluster of each row: ``0 .. n_clusters - 1`` (positions of the model's
        centres), or the IDs of ``cluster_ids`` when given.
    n_clusters : int, optional
        Number of clusters (default: ``max(labels) + 1``, which costs a pass over labels).
    feature_names : sequence of str, optional
        Default: the names carried by X (xarray coordinate, DataFrame columns, store
        attributes), else ``x0, x1, ...``.
    cluster_ids : sequence of int, optional
        The ascending stable ID of each cluster (``model.cluster_ids_`` after
        :func:`dkmeans.align_labels`); default ``0 .. n_clusters - 1``.
    score : dict of str to float, str or callable, optional
        Ranks clusters (largest first; by size without a score).  A dict weights the
        standardised means (``{"retention_30d": 1, "churn_rate": -1}``); a string is
        an expression over the feature means (``"engagement_rate * member_count"``);
        a callable gets the means DataFrame.
    top_n : int, default=3
        Distinguishing features listed per cluster.
    sample_weight : array-like or dask array of shape (n_samples,), optional

    Returns
    -------
    Archetypes

    Examples
    --------
    >>> import numpy as np
    >>> from dkmeans import profile_clusters
    >>> X = np.array([[1.0, 10.0], [1.2, 11.0], [5.0, 10.5], [5.4, 10.5]])
    >>> arch = profile_clusters(X, [0, 0, 1, 1], feature_names=["posts", "age"])
    >>> arch.means.round(2).values.tolist()
    [[1.1, 10.5], [5.2, 10.5]]
    """
    inp = as_input(X)
    names = archetype_feature_names(inp, feature_names)
    rows = RowBlocks(inp.array, as_sample_weight(sample_weight, inp.array), active_client())
    lab = unwrap(labels)
    lab = lab if isinstance(lab, da.Array) else da.from_array(np.asarray(lab))
    if lab.shape != (inp.n_samples,):
        raise InputError(f"labels have shape {lab.shape}; expected ({inp.n_samples},).")
    if n_clusters is None:
        n_clusters = len(cluster_ids) if cluster_ids is not None else int(lab.max().compute()) + 1
    ids = np.arange(n_clusters) if cluster_ids is None else np.asarray(cluster_ids)
    if ids.shape != (n_clusters,):
        raise ParameterError(f"cluster_ids must have {n_clusters} entries; got {ids.shape[0]}.")
    if cluster_ids is not None:
        lab = lab.map_blocks(lambda b: np.searchsorted(ids, b), dtype=np.int64)
    pieces = rows.aligned(lab)
    with single_threaded_blas():
        mom = rows.reduce(
            S.feature_moments_chunk, S.combine_feature_moments, "archetypes", n_clusters,
            per_block=lambda i: (pieces[i],),
        )  # fmt: skip
    return archetypes_from_moments(mom, names, ids, score=score, top_n=top_n)


def archetype_feature_names(inp, feature_names=None) -> list[str]:
    """The names profiles use: given, carried by X, or ``x0, x1, ...``; checked."""
    names = feature_names if feature_names is not None else inp.feature_names
    if names is None:
        names = [f"x{i}" for i in range(inp.n_features)]
    names = [str(n) for n in names]
    if len(names) != inp.n_features or len(set(names)) != len(names):
        raise ParameterError(
            f"feature_names must be {inp.n_features} unique names; got {len(names)} "
            f"({len(set(names))} unique)."
        )
    return names


def archetypes_from_moments(mom, names, ids, *, score=None, top_n: int = 3) -> Archetypes:
    """Archetypes from per-cluster feature moments (``FeatureMoments``, positional
    clusters) in original units; ``ids`` the cluster IDs."""
    import pandas as pd

    n_clusters = len(ids)
    total = S.combine_feature_moments(
        [S.FeatureMoments(mom.counts[i : i + 1], mom.means[i : i + 1], mom.m2[i : i + 1])
         for i in range(n_clusters)]
    )  # fmt: skip
    g_mean = total.means[0]
    g_std = np.sqrt(total.m2[0] / max(total.counts[0], 1.0))
    filled = np.where(mom.counts > 0, mom.counts, 1.0)[:, None]
    stds = np.sqrt(mom.m2 / filled)
    safe = np.where(g_std > 0, g_std, 1.0)
    z = np.where(g_std > 0, (mom.means - g_mean) / safe, 0.0)
    index = pd.Index(ids, name="cluster")
    means = pd.DataFrame(mom.means, index=index, columns=names)
    zdf = pd.DataFrame(z, index=index, columns=names)
    return Archetypes(
        means=means,
        stds=pd.DataFrame(stds, index=index, columns=names),
        z=zdf,
        sizes=pd.Series(mom.counts, index=index, name="size"),
        score=_score(score, means, zdf),
        global_mean=pd.Series(g_mean, index=names),
        global_std=pd.Series(g_std, index=names),
        top_n=top_n,
    )
