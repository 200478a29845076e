"""The exceptions dkmeans raises for problems the caller can fix.

Each subclasses the built-in exception (``ValueError``, ``TypeError``, ``KeyError``,
``FileNotFoundError``, ``FileExistsError``, ``OSError`` or ``RuntimeError``) that
scikit-learn-style code already catches, so ``except ValueError`` keeps working;
``except DKMeansError`` catches all of them and nothing else.

========================  =====================================================
``InputError``            X, weights or labels of the wrong shape or values
``NotEnoughDataError``    fewer samples than the request needs
``InputTypeError``        an input type or dtype dkmeans cannot take
``ParameterError``        a parameter value or type not accepted
``UnknownNameError``      a variable or feature name that is not there
``NotFittedError``        an estimator used before it was fitted
``StoreError``            a store, model, checkpoint or labels array unfit for the call
``NotFoundError``         a store, model, configuration or file that does not exist
``OutputExistsError``     an output already there (pass ``overwrite=True``)
``LowConfidenceError``    an uncertain k choice that a job was told to stop on
``ConfigError``           a job file or dask config setting that is invalid
``ClusterConfigError``    an invalid cluster configuration
``ChunkReadError``        a chunk unreadable after the retries
``StoreWriteError``       output that could not be written completely
========================  =====================================================
"""

from ._engine.errors import (
    ChunkReadError,
    ClusterConfigError,
    ConfigError,
    DKMeansError,
    InputError,
    InputTypeError,
    LowConfidenceError,
    NotEnoughDataError,
    NotFittedError,
    NotFoundError,
    OutputExistsError,
    ParameterError,
    StoreError,
    StoreWriteError,
    UnknownNameError,
)

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
