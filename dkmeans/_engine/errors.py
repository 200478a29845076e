"""dkmeans' exceptions: each one a problem the caller can fix, subclassing the built-in
exception that scikit-learn, NumPy and Python code already catches.

The CLI prints these as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError

__all__ = [
    "ChunkReadError",
    "ClusterConfigError",
    "ConfigError",
    "DKMeansError",
    "InputError",
    "InputTypeError",
    "LowConfidenceError",
    "NotEnoughDataError",
    "NotFittedError",
    "NotFoundError",
    "OutputExistsError",
    "ParameterError",
    "StoreError",
    "StoreWriteError",
    "UnknownNameError",
]


class DKMeansError(Exception):
    """Base class of every error dkmeans raises on purpose."""


class InputError(DKMeansError, ValueError):
    """X, sample_weight, labels or another input has the wrong shape or values."""


class NotEnoughDataError(InputError):
    """Fewer samples than the request needs (more clusters than rows, say)."""


class InputTypeError(DKMeansError, TypeError):
    """An input of a type or dtype dkmeans cannot take (the message says what can)."""


class ParameterError(DKMeansError, ValueError, TypeError):
    """A parameter of an estimator, a function or a job has a value or type it does not
    accept (both a ValueError and a TypeError, as scikit-learn's InvalidParameterError)."""


class UnknownNameError(DKMeansError, KeyError):
    """A name (a store's variable, a feature) that is not there, or is ambiguous."""

    def __str__(self) -> str:  # the message, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


class NotFittedError(DKMeansError, _SkNotFittedError):
    """An estimator used (saved, say) before it was fitted."""


class StoreError(DKMeansError, ValueError):
    """A Zarr store, saved model, checkpoint or labels array is not what the call needs."""


class NotFoundError(DKMeansError, FileNotFoundError):
    """A store, model, configuration or file that does not exist."""


class OutputExistsError(DKMeansError, FileExistsError):
    """An output (labels, model, store) already exists, or another writer holds it."""


class ConfigError(DKMeansError, ValueError):
    """A job file or a dask config setting that cannot be used as written."""


class ClusterConfigError(ConfigError):
    """A cluster configuration (``cluster_configs/*.yaml``) that cannot be used."""


class ChunkReadError(DKMeansError, OSError):
    """A chunk could not be read after the retries; names the store and the chunk."""


class StoreWriteError(DKMeansError, OSError):
    """Output that could not be written completely (nothing was switched to it)."""


class LowConfidenceError(DKMeansError, RuntimeError):
    """The k choice is uncertain and the job was told to stop rather than publish
    (``Job(on_low_confidence="error")``); ``confidence`` is the
    :class:`~dkmeans.model_selection.KConfidence`.  Nothing was written."""

    def __init__(self, message: str, confidence=None):
        super().__init__(message)
        self.confidence = confidence
