"""A job's two passes over all of the raw records: the gathering pass and the final one.

The gathering pass reads everything a job needs before it can fit.  Per block: the
column moments (and the NaN/inf count), optionally the centred Gram for PCA, and
candidate rows of a seeded sample.  Combined in block order like every other
reduction, so the result does not depend on how blocks are grouped into tasks.

The sample is drawn by random keys, the smallest keys winning: uniform keys ``u`` give a
uniform sample without replacement; with row weights the key is ``-log(1 - u) / w``
(Efraimidis and Spirakis' weighted sampling without replacement), which orders rows as
``u`` does when all weights are equal, so unit weights draw the same rows as none.

The final pass labels each block through the fitted model, writes the labels, and
measures the assignment (cost, sizes, simplified silhouette) and the per-cluster
feature moments of the raw records, all from the one read; given the previous labels
of the same rows, it also counts how many changed (``LabelCounts``).  No dask here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import backend as B
from . import cluster_stats as S
from . import kernels as K
from . import linalg as L
from . import reductions as R
from .errors import InputError

MAX_PREVIOUS_ID = 65_535  # bounds the previous x new count matrix (small, to the client)


class Gathered(NamedTuple):
    """Moments of all rows, their centred Gram (or None) and the row sample; with row
    weights, the sample's design weights (``w / π``: the weight a sampled row stands
    for), else None."""

    moments: R.Moments
    gram: L.Centred | None
    sample: S.RowSample
    sample_weight: np.ndarray | None = None


def sample_keys(n: int, seed, sample_weight=None) -> np.ndarray:
    """One key per row; the smallest keys form the sample."""
    u = np.random.default_rng(seed).random(n)
    if sample_weight is None:
        return u
    w = np.asarray(B.to_host(sample_weight), dtype=np.float64)
    with np.errstate(divide="ignore"):  # a zero weight gets key inf: drawn last
        return -np.log1p(-u) / w


def key_threshold(size: int, n_samples: int, weighted: bool) -> float:
    """A key below which the ``size`` smallest of ``n_samples`` uniform keys fall but for
    a rare chance (the expected count below it is ``size + 10·√size + 10``: a shortfall
    has probability under 1e-9 for any size, and ~1e-23 for large samples).

    Blocks keep only rows below it, so a block sends its few likely rows, not ``size``;
    the caller checks that at least ``size`` rows fell below (then the sample is exact).
    Weighted keys have no such bound before the weights are summed: inf.
    """
    if weighted or size >= n_samples:
        return np.inf
    return min(1.0, (size + 10 * np.sqrt(size) + 10) / n_samples)


def gather_chunk(X, sample_weight, with_gram: bool, sampling) -> Gathered:
    """``sampling = (seed, size, row offset, key threshold)``: the block's own seed and
    place, and the key its candidate rows fall below."""
    seed, size, offset, threshold = sampling
    mom = R.weighted_moments_chunk(X, sample_weight)
    gram = L.gram_chunk(X) if with_gram else None
    keys = sample_keys(X.shape[0], seed, sample_weight)
    below = np.flatnonzero(keys < threshold) if np.isfinite(threshold) else np.arange(keys.shape[0])
    chosen = below[S._smallest(keys[below], size)]
    w = None if sample_weight is None else np.asarray(B.to_host(sample_weight))[chosen]
    sample = S.RowSample(keys[chosen], K.sample_rows(X, chosen), None, chosen + offset, None, w)
    return Gathered(mom, gram, sample)


def combine_gathered(parts: list[Gathered], size: int) -> Gathered:
    grams = [p.gram for p in parts]
    return Gathered(
        R.combine_moments([p.moments for p in parts]),
        None if grams[0] is None else L.combine_gram(grams),
        S.combine_samples([p.sample for p in parts], size, False),
    )


def finalize_gathered(g: Gathered, size: int) -> Gathered:
    """The ``size`` smallest keys in row order (the keys decided which rows, not their
    order), without rows of zero weight (drawn only when too few rows weigh anything).

    The passes keep ``size + 1`` keys: the last one, τ, gives each weighted row its
    inclusion probability ``π = 1 - exp(-w τ)`` (Efraimidis-Spirakis keys are
    exponential with rate w), and the design weight ``w / π`` (``w`` when every row
    was drawn).  With equal weights the design weights are equal too.
    """
    s = g.sample
    order = np.argsort(s.keys, kind="stable")
    tau = float(s.keys[order[size]]) if order.shape[0] > size else np.inf
    drawable = order[:size][np.isfinite(s.keys[order[:size]])]
    kept = S._take(s, drawable[np.argsort(s.index[drawable], kind="stable")], s.counts)
    design = None
    if kept.weights is not None:
        w = kept.weights.astype(np.float64)
        design = w if not np.isfinite(tau) else w / -np.expm1(-w * tau)
    return g._replace(sample=kept, sample_weight=design)


class LabelCounts(NamedTuple):
    """Records' new labels against their previous ones (integer counts: exact in any
    order).  ``transitions[p, j]``: records with previous label ``p`` (a value, 0 ..
    the largest seen) now in cluster position ``j``; ``changed`` compares IDs."""

    changed: int
    unlabelled: int
    transitions: np.ndarray


def label_counts_chunk(previous, labels, ids, k: int) -> LabelCounts:
    """Counts of one block: ``previous`` labels (IDs; negative: unlabelled), ``labels``
    the new cluster positions, ``ids`` their IDs (None: the positions are the IDs)."""
    previous = np.asarray(B.to_host(previous)).astype(np.int64, copy=False)
    new_ids = labels if ids is None else np.asarray(ids)[labels]
    known = previous >= 0
    width = int(previous.max()) + 1 if known.any() else 0
    if width > MAX_PREVIOUS_ID + 1:  # the count matrix is as wide as the largest ID
        raise InputError(
            f"previous_labels hold the ID {width - 1}; cluster IDs of a labels array are "
            f"at most {MAX_PREVIOUS_ID}: pass the labels an earlier run wrote."
        )
    flat = previous[known] * k + labels[known]
    transitions = np.bincount(flat, minlength=width * k).reshape(width, k)
    changed = int(np.count_nonzero(previous[known] != new_ids[known]))
    return LabelCounts(changed, int(known.shape[0] - np.count_nonzero(known)), transitions)


def combine_label_counts(parts: list[LabelCounts]) -> LabelCounts:
    """Sum the counts; each block's matrix is as wide as its largest previous label."""
    width = max(p.transitions.shape[0] for p in parts)
    total = np.zeros((width, parts[0].transitions.shape[1]), dtype=np.int64)
    for p in parts:
        total[: p.transitions.shape[0]] += p.transitions
    return LabelCounts(sum(p.changed for p in parts), sum(p.unlabelled for p in parts), total)


def label_profile_chunk(X, sample_weight, transform, centers, center_set, shift,
                        spherical: bool, ids, write, offset: int, previous=None):  # fmt: skip
    """``(Assignment, FeatureMoments, LabelCounts or None)`` of one block of raw records.

    ``transform`` maps the block to the model's space (None: it is there already);
    the labels (``ids[label]`` when ``ids`` is given) go to ``write(labels, offset)``;
    ``previous``, the same rows' previous labels, is counted against them.
    """
    K.finite_block(X)
    z = X if transform is None else transform(X)
    if spherical:
        z = K.unit_rows(z)
    labels, assignment = R.label_chunk(z, sample_weight, centers, center_set, shift)
    labels = np.asarray(B.to_host(labels))
    moments = S.feature_moments_chunk(X, sample_weight, centers.shape[0], labels)
    if write is not None:
        write(labels if ids is None else ids[labels].astype(np.int32), offset)
    counts = None
    if previous is not None:
        counts = label_counts_chunk(previous, labels, ids, centers.shape[0])
    return assignment, moments, counts


def combine_label_profile(parts):
    counts = [p[2] for p in parts]
    return (
        R.combine_assignment([p[0] for p in parts]),
        S.combine_feature_moments([p[1] for p in parts]),
        None if counts[0] is None else combine_label_counts(counts),
    )


def chain(x, *, functions):
    """Apply block functions in order (a pipeline's transformers on one block)."""
    for fn in functions:
        x = fn(x)
    return x
