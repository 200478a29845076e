"""Synthetic data generated block by block (never whole in memory), and written to Zarr."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

import dask.array as da
import numpy as np

__all__ = ["make_blobs", "make_communities", "write_communities", "write_zarr"]


from .._engine.errors import OutputExistsError, ParameterError


def _blob_block(block_id, *, sizes, centers, cluster_std, dtype, entropy, with_labels):
    i = block_id[0]
    rng = np.random.default_rng(np.random.SeedSequence([entropy, i]))
    n = sizes[i]
    labels = rng.integers(centers.shape[0], size=n)
    X = centers[labels] + cluster_std * rng.standard_normal((n, centers.shape[1]))
    return labels.astype(np.int32) if with_labels else X.astype(dtype)


def make_blobs(
    n_samples: int = 100_000,
    n_features: int = 8,
    centers: int = 8,
    *,
    cluster_std: float = 1.0,
    center_box: tuple[float, float] = (-10.0, 10.0),
    chunks: int = 100_000,
    dtype=np.float32,
    random_state: int = 0,
):
    """Isotropic Gaussian blobs as lazy dask arrays, each block from its own seed.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, n_features)
    y : dask.array.Array of shape (n_samples,), int32 true blob of each row
    true_centers : ndarray of shape (centers, n_features)
    """
    rng = np.random.default_rng(random_state)
    true_centers = rng.uniform(*center_box, size=(centers, n_features))
    entropy = int(rng.integers(2**63))
    row_chunks = da.core.normalize_chunks((chunks,), (n_samples,))[0]
    kw = dict(sizes=row_chunks, centers=true_centers, cluster_std=cluster_std, dtype=dtype,
              entropy=entropy)  # fmt: skip
    X = da.map_blocks(
        lambda block_id=None: _blob_block(block_id, with_labels=False, **kw),
        chunks=(row_chunks, (n_features,)), dtype=dtype, name=f"blobs-X-{entropy}",
    )  # fmt: skip
    y = da.map_blocks(
        lambda block_id=None: _blob_block(block_id, with_labels=True, **kw),
        chunks=(row_chunks,), dtype=np.int32, name=f"blobs-y-{entropy}",
    )  # fmt: skip
    return X, y, true_centers


def write_zarr(X: da.Array, path: str | os.PathLike, *, overwrite: bool = False, **attrs):
    """Write a dask array to a new Zarr array, atomically: a temporary name, then a rename.

    Parameters
    ----------
    X : dask.array.Array
        Written with its own chunks as the Zarr chunks.
    path : str or path-like
    overwrite : bool, default=False
        Replace an existing store at ``path``.
    **attrs
        Stored as the array's attributes (e.g. ``feature_names=[...]``).
    """
    path = Path(path)
    with _atomic_dir(path, overwrite) as tmp:
        X.to_zarr(str(tmp))
        if attrs:
            import zarr

            zarr.open_array(str(tmp), mode="r+").attrs.update(attrs)
    return path


@contextlib.contextmanager
def _atomic_dir(path: Path, overwrite: bool):
    """Yield a temporary sibling of ``path`` to write; move it into place on success."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True to replace it.")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


# --------------------------------------------------------------------------- communities

# (name, unit, transform): values are drawn on a latent scale, then mapped to units.
COMMUNITY_FEATURES = (
    ("posts_per_day", "posts/day", "exp"),
    ("member_count", "members", "exp"),
    ("retention_30d", "fraction", "logistic"),
    ("vocabulary_density", "distinct words per 100", "scale100"),
    ("engagement_rate", "replies/post", "exp"),
    ("churn_rate", "fraction/month", "logistic"),
    ("moderator_ratio", "moderators per 1000 members", "exp"),
    ("cross_promotion_fit", "score in [-1, 1]", "tanh"),
    ("thread_depth", "replies", "exp"),
    ("account_age_days", "days", "exp"),
)

# Planted archetypes: latent means per feature (order of COMMUNITY_FEATURES) and share.
COMMUNITY_ARCHETYPES = {
    "thriving_hub": ((2.5, 9.5, 1.2, 0.45, 1.4, -2.2, 0.3, 0.4, 1.8, 6.8), 0.15),
    "niche_experts": ((0.5, 6.0, 1.8, 0.80, 1.0, -2.8, 1.2, -0.3, 2.3, 7.4), 0.20),
    "dormant": ((-2.0, 7.0, -1.5, 0.40, -1.2, 0.8, -0.5, 0.0, 0.2, 7.2), 0.30),
    "spam_farm": ((3.5, 5.0, -2.5, 0.15, -2.0, 1.5, -2.0, 0.9, -0.5, 4.0), 0.10),
    "casual_chat": ((1.5, 8.0, 0.2, 0.30, 0.6, -1.0, 0.0, 0.1, 1.0, 6.0), 0.25),
}
_LATENT_STD = 0.35
_NOISE_SHARE = 0.02  # rows drawn from no archetype


def _to_units(z: np.ndarray, transform: str) -> np.ndarray:
    if transform == "exp":
        return np.exp(z)
    if transform == "logistic":
        return 1.0 / (1.0 + np.exp(-z))
    if transform == "tanh":
        return np.tanh(z)
    return 100.0 * np.clip(z, 0.0, 1.0)  # scale100


def _community_block(block_id, *, sizes, means, shares, entropy, with_labels, emerging=None):
    i = block_id[0]
    rng = np.random.default_rng(np.random.SeedSequence([entropy, i]))
    n = sizes[i]
    labels = rng.choice(len(shares), size=n, p=shares)
    noise = rng.random(n) < _NOISE_SHARE
    base = means.shape[0] - (0 if emerging is None else emerging.shape[0])
    if emerging is not None:  # its own stream: the other rows keep what they had without it
        labels = _emerge(labels, noise, emerging, base, np.random.SeedSequence([entropy, i, 1]))
    z = means[labels] + _LATENT_STD * rng.standard_normal((n, means.shape[1]))
    lo, hi = means[:base].min(axis=0), means[:base].max(axis=0)
    z[noise] = rng.uniform(lo, hi, size=(int(noise.sum()), means.shape[1]))
    if with_labels:
        return np.where(noise, -1, labels).astype(np.int8)
    cols = [_to_units(z[:, j], f[2]) for j, f in enumerate(COMMUNITY_FEATURES)]
    return np.stack(cols, axis=1).astype(np.float32)


def _emerge(labels, noise, emerging, base: int, seed) -> np.ndarray:
    """Rows of the planted archetypes that turn into an emerging one: each takes its
    share of every archetype's rows (drawn from ``seed``, apart from the other draws)."""
    rng = np.random.default_rng(seed)
    u = rng.random(labels.shape[0])
    edges = np.cumsum(emerging[:, -1])
    turned = (u < edges[-1]) & ~noise
    out = labels.copy()
    out[turned] = base + np.searchsorted(edges, u[turned], side="right")
    return out


def _planted(archetypes, emerging):
    """``(latent means with each emerging archetype's share as a last column, shares of
    the planted ones, names)``, checked."""
    archetypes = COMMUNITY_ARCHETYPES if archetypes is None else dict(archetypes)
    emerging = {} if emerging is None else dict(emerging)
    d = len(COMMUNITY_FEATURES)
    table = {**archetypes, **emerging}
    bad = [n for n, (m, share) in table.items() if len(m) != d or not 0 < share < 1]
    if bad or not archetypes or len(table) != len(archetypes) + len(emerging):
        raise ParameterError(
            f"archetypes and emerging map distinct names to ({d} latent means, a share in "
            f"(0, 1)); check {bad or 'the names'}."
        )
    if sum(s for _, s in emerging.values()) >= 1:
        raise ParameterError("The emerging archetypes' shares must sum to less than 1.")
    means = np.array([m for m, _ in table.values()], dtype=np.float64)
    shares = np.array([s for _, s in archetypes.values()])
    grow = None if not emerging else np.array([[*m, s] for m, s in emerging.values()])
    return means, shares / shares.sum(), grow, list(table)


def make_communities(n_samples: int = 1_000_000, *, chunks: int = 125_000, random_state=0,
                     archetypes=None, emerging=None):  # fmt: skip
    """Synthetic online communities: named features in their own units, planted archetypes.

    Ten features (posting frequency, member count, retention, vocabulary density,
    engagement, churn, moderation, cross-promotion fit, thread depth, account
    age) on very different scales, heavy-tailed where real ones are; five
    archetypes in unequal shares; 2% of rows from no archetype (label -1).

    Parameters
    ----------
    n_samples : int, default=1_000_000
    chunks : int, default=125_000
        Rows per block (each block draws from its own seed).
    random_state : int, default=0
    archetypes : mapping of str to (sequence of 10 floats, float), optional
        The planted archetypes: name -> (latent means in the order of
        ``COMMUNITY_FEATURES``, share of the rows); default ``COMMUNITY_ARCHETYPES``.
        With the same ``random_state`` and shares, every row keeps its archetype and
        its noise draws, so moving one archetype's means makes that archetype drift
        and leaves the others' rows as they were.
    emerging : mapping of str to (sequence of 10 floats, float), optional
        Archetypes that appear: each takes its share of the rows of the planted
        archetypes (in proportion to theirs, noise rows excepted), drawn apart from
        the other draws, so every other row keeps what it holds without them.
        Labelled after the planted ones.

    Returns
    -------
    X : dask.array.Array of shape (n_samples, 10), float32
    archetype : dask.array.Array of shape (n_samples,), int8 (-1 for noise rows)
    feature_names : list of str
    units : list of str
    archetype_names : list of str
    """
    rng = np.random.default_rng(random_state)
    means, shares, grow, archetype_names = _planted(archetypes, emerging)
    entropy = int(rng.integers(2**63))
    row_chunks = da.core.normalize_chunks((chunks,), (n_samples,))[0]
    kw = dict(sizes=row_chunks, means=means, shares=shares, entropy=entropy, emerging=grow)
    X = da.map_blocks(
        lambda block_id=None: _community_block(block_id, with_labels=False, **kw),
        chunks=(row_chunks, (len(COMMUNITY_FEATURES),)), dtype=np.float32,
        name=f"communities-X-{entropy}",
    )  # fmt: skip
    y = da.map_blocks(
        lambda block_id=None: _community_block(block_id, with_labels=True, **kw),
        chunks=(row_chunks,), dtype=np.int8, name=f"communities-y-{entropy}",
    )  # fmt: skip
    names = [f[0] for f in COMMUNITY_FEATURES]
    units = [f[1] for f in COMMUNITY_FEATURES]
    return X, y, names, units, archetype_names


def write_communities(path, n_samples: int = 1_000_000, *, chunks: int = 125_000,
                      random_state=0, overwrite: bool = False, archetypes=None,
                      emerging=None) -> Path:  # fmt: skip
    """Write :func:`make_communities` as an xarray-style Zarr group, atomically.

    ``archetypes`` and ``emerging`` plant drifting and appearing archetypes (see
    :func:`make_communities`).

    The group holds ``features`` (community × feature, float32, with ``units``),
    ``archetype`` (the planted archetype of each row, -1 for noise) and the
    ``feature`` coordinate, so ``xarray.open_zarr(path)`` opens it as a Dataset.
    """
    import xarray as xr

    path = Path(path)
    X, y, names, units, planted = make_communities(
        n_samples, chunks=chunks, random_state=random_state, archetypes=archetypes,
        emerging=emerging,
    )  # fmt: skip
    ds = xr.Dataset(
        {
            "features": (("community", "feature"), X, {"units": units}),
            "archetype": (("community",), y, {"names": planted, "noise": -1}),
        },
        coords={"feature": np.array(names, dtype=object)},
        attrs={"description": "synthetic online communities (dkmeans.datasets)"},
    )
    with _atomic_dir(path, overwrite) as tmp:
        ds.to_zarr(str(tmp), mode="w", consolidated=False)
    return path
