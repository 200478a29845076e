"""Stable cluster IDs across retrains: match a new model's clusters to a reference's."""

from __future__ import annotations

import dask.array as da
import numpy as np
from scipy.optimize import linear_sum_assignment

from ._engine.validation import unwrap

__all__ = ["align_labels", "centers_in_feature_space"]


from ._engine.errors import InputError, InputTypeError


def split_model(model):
    """``(steps before the KMeans, the KMeans)`` of a KMeans or a Pipeline ending in one."""
    steps = [s for _, s in model.steps] if hasattr(model, "steps") else [model]
    km = steps[-1]
    if not hasattr(km, "cluster_centers_"):
        raise InputTypeError(
            f"{type(km).__name__} is not a fitted KMeans (or a Pipeline ending in one)."
        )
    return steps[:-1], km


def centers_in_feature_space(model) -> np.ndarray:
    """A model's centres in the units of its input features (before scaling and PCA)."""
    before, km = split_model(model)
    centers = np.asarray(km.cluster_centers_, dtype=np.float64)
    for step in reversed(before):
        centers = np.asarray(step.inverse_transform(centers), dtype=np.float64)
    return centers


def _reference_scale(reference) -> np.ndarray | None:
    """The reference's feature scale (its StandardScaler's), so no unit dominates."""
    before, _ = split_model(reference)
    scale = getattr(before[0], "scale_", None) if before else None
    return None if scale is None else np.where(scale > 0, scale, 1.0)


def align_labels(model, reference, *, max_distance: float | None = None):
    """Relabel ``model``'s clusters with the IDs of the matching ``reference`` clusters.

    Centres are compared in the original feature units (undoing scaling and PCA of
    either model, so models with different preprocessing compare), standardised by
    the reference's scaler when it has one.  The matching minimises the summed
    squared distance (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``);
    clusters left unmatched (more clusters than the reference, or farther than
    ``max_distance`` from their match) get new IDs above the reference's largest.

    Parameters
    ----------
    model : fitted KMeans, or Pipeline ending in one
        Changed in place: its centres are reordered by ID, ``cluster_ids_`` is set,
        and ``labels_``, ``cluster_sizes_`` and ``predict`` follow the IDs.
    reference : fitted KMeans, or Pipeline ending in one
        The previous model (its own ``cluster_ids_`` if it was aligned before).
    max_distance : float, optional
        Largest (standardised) centre distance still counted as the same cluster.

    Returns
    -------
    model
    """
    _, km = split_model(model)
    _, ref_km = split_model(reference)
    new_c = centers_in_feature_space(model)
    ref_c = centers_in_feature_space(reference)
    if new_c.shape[1] != ref_c.shape[1]:
        raise InputError(
            f"The model has {new_c.shape[1]} features and the reference {ref_c.shape[1]}; "
            "align models trained on the same features."
        )
    scale = _reference_scale(reference)
    if scale is not None:
        new_c, ref_c = new_c / scale, ref_c / scale
    ref_ids = np.asarray(getattr(ref_km, "cluster_ids_", np.arange(ref_c.shape[0])))
    cost = ((new_c[:, None, :] - ref_c[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    ids = np.full(new_c.shape[0], -1, dtype=np.int64)
    for r, c in zip(rows, cols, strict=True):
        if max_distance is None or np.sqrt(cost[r, c]) <= max_distance:
            ids[r] = ref_ids[c]
    unmatched = np.flatnonzero(ids < 0)
    ids[unmatched] = ref_ids.max() + 1 + np.arange(unmatched.shape[0])
    _relabel(km, ids)
    return model


def _relabel(km, ids: np.ndarray) -> None:
    """Reorder ``km``'s clusters by ascending ID and remap its labels to the IDs."""
    old_ids = getattr(km, "cluster_ids_", np.arange(ids.shape[0]))
    order = np.argsort(ids, kind="stable")
    km.cluster_centers_ = km.cluster_centers_[order]
    if hasattr(km, "cluster_sizes_"):  # absent before a label pass (compute_labels=False)
        km.cluster_sizes_ = km.cluster_sizes_[order]
    km.cluster_ids_ = ids[order]
    if not hasattr(km, "labels_"):
        return
    # labels_ hold the old IDs: map old ID -> new ID through a lookup table
    lut = np.zeros(int(old_ids.max()) + 1, dtype=np.int32)
    lut[old_ids] = ids
    labels = km.labels_
    data = unwrap(labels)
    mapped = (
        data.map_blocks(lambda b: lut[b], dtype=np.int32)
        if isinstance(data, da.Array)
        else lut[np.asarray(data)]
    )
    km.labels_ = labels.copy(data=mapped) if hasattr(labels, "dims") else mapped
