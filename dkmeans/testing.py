"""Helpers for testing dkmeans estimators with scikit-learn's own checks.

>>> from sklearn.utils.estimator_checks import check_estimator
>>> from dkmeans import KMeans
>>> from dkmeans.testing import expected_failed_checks
>>> model = KMeans(3, random_state=0)
>>> _ = check_estimator(model, expected_failed_checks=expected_failed_checks(model))
"""

from __future__ import annotations

__all__ = ["expected_failed_checks"]

_WEIGHTS_ARE_NOT_REPEATS = (
    "sample_weight is not equivalent to repeating rows: the random draws of seeding "
    "(and of the mini-batches) differ between the weighted and the repeated data, so "
    "the partition can differ; scikit-learn marks the same check as an expected "
    "failure for its own estimator of this name"
)

_EXPECTED = {
    "KMeans": {
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_ARE_NOT_REPEATS,
        "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_ARE_NOT_REPEATS,
    },
    "MiniBatchKMeans": {
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_ARE_NOT_REPEATS,
        "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_ARE_NOT_REPEATS,
    },
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks of :func:`sklearn.utils.estimator_checks.check_estimator` that
    ``estimator`` is known to fail, each with the reason (pass it as
    ``expected_failed_checks``).  They are the ones scikit-learn expects its own
    estimator of the same name to fail."""
    return dict(_EXPECTED.get(type(estimator).__name__, {}))
