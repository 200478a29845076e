"""The exceptions dkmeans raises for problems the caller can fix.

Each subclasses the built-in exception (``ValueError``, ``TypeError``,
``FileNotFoundError`` or ``OSError``) that scikit-learn-style code already catches,
so ``except ValueError`` keeps working; ``except dkmeans.exceptions.DKMeansError``
catches all of them and nothing else.
"""

from ._engine.errors import (
    ChunkReadError,
    ClusterConfigError,
    DKMeansError,
    InputError,
    InputTypeError,
    NotEnoughDataError,
    ParameterError,
    StoreError,
    StoreNotFoundError,
)

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
