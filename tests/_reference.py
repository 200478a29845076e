"""Naive NumPy references the tests compare against (clarity over speed)."""

import numpy as np


def sq_dists(X, C):
    """(n, k) squared Euclidean distances by direct differences, float64."""
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    return ((X[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)


def lloyd_partials(X, C, w=None):
    """Labels, per-cluster weighted sums, counts and cost of one assignment step."""
    w = np.ones(len(X)) if w is None else np.asarray(w, dtype=np.float64)
    D = sq_dists(X, C)
    labels = D.argmin(axis=1)
    k = C.shape[0]
    onehot = np.eye(k)[labels] * w[:, None]
    sums = onehot.T @ np.asarray(X, dtype=np.float64)
    counts = onehot.sum(axis=0)
    cost = float((w * D[np.arange(len(X)), labels]).sum())
    return labels, sums, counts, cost


def moments(X):
    X = np.asarray(X, dtype=np.float64)
    return X.mean(axis=0), X.var(axis=0) * len(X)
