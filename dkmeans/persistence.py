"""Save and load fitted models as a directory of JSON and ``.npy`` files (never pickle).

Layout of a model directory::

    model.json        format and version, library versions, every step's class,
                      parameters and scalar attributes, the k table, the training
                      data's fingerprint, free-form metadata
    arrays/*.npy      every array attribute (loaded with ``allow_pickle=False``)

This module sits above the estimators: importing it registers every one of them, so
:func:`load` can rebuild any model it finds.
"""

from __future__ import annotations

from ._engine.model_io import (
    FORMAT_VERSION,
    SaveMixin,
    data_fingerprint,
    load,
    model_exists,
    read_manifest,
    save,
)
from .cluster import KMeans
from .decomposition import PCA
from .minibatch import MiniBatchKMeans
from .preprocessing import StandardScaler

__all__ = [
    "FORMAT_VERSION",
    "SaveMixin",
    "data_fingerprint",
    "load",
    "model_exists",
    "read_manifest",
    "save",
]

# The estimators load() rebuilds: each registered itself by subclassing SaveMixin.
ESTIMATORS = (KMeans, MiniBatchKMeans, PCA, StandardScaler)
