"""dkmeans' exceptions: each one a problem the caller can fix, subclassing the built-in
exception scikit-learn, NumPy and Python code already catches.

The CLI prints these (and the built-in errors of opening stores and files) as one
line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ChunkReadError",
    "ClusterConfigError",
    "DKMeansError",
    "InputError",
    "InputTypeError",
    "NotEnoughDataError",
    "ParameterError",
    "StoreError",
    "StoreNotFoundError",
]


class DKMeansError(Exception):
    """Base class of every error dkmeans raises on purpose."""


class InputError(DKMeansError, ValueError):
    """X, sample_weight or another input has the wrong shape, values or features."""


class InputTypeError(DKMeansError, TypeError):
    """An input of a type or dtype dkmeans cannot take (the message says what can)."""


class ParameterError(DKMeansError, ValueError):
    """An estimator's or a function's parameter has a value it does not accept."""


class NotEnoughDataError(InputError):
    """Fewer samples than the request needs (more clusters than rows, say)."""


class StoreError(DKMeansError, ValueError):
    """A Zarr store, a saved model or a labels array is not what the call needs."""


class StoreNotFoundError(DKMeansError, FileNotFoundError):
    """A store, variable, model or file that does not exist."""


class ClusterConfigError(DKMeansError, ValueError):
    """A cluster configuration (``cluster_configs/*.yaml``) or job file is invalid."""


class ChunkReadError(DKMeansError, OSError):
    """A chunk could not be read after the retries; names the store and the chunk."""
