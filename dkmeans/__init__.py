"""dkmeans: k-means for data larger than memory, on Dask arrays and Zarr stores."""

import sys

from . import exceptions
from .alignment import align_labels
from .app.deploy import open_cluster
from .archetypes import Archetypes, profile_clusters
from .changes import ArchetypeChanges, LabelChurn, compare_archetypes
from .cluster import KMeans
from .decomposition import PCA, TruncatedSVD
from .io import from_zarr, open_zarr_array
from .metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_samples,
    silhouette_score,
    simplified_silhouette_score,
)
from .minibatch import MiniBatchKMeans
from .model_selection import KSelection, select_k
from .persistence import load, save
from .preprocessing import StandardScaler
from .streaming import Summary, label_and_profile, summarize

__all__ = [
    "PCA",
    "ArchetypeChanges",
    "Archetypes",
    "KMeans",
    "KSelection",
    "LabelChurn",
    "MiniBatchKMeans",
    "StandardScaler",
    "Summary",
    "TruncatedSVD",
    "align_labels",
    "calinski_harabasz_score",
    "compare_archetypes",
    "davies_bouldin_score",
    "exceptions",
    "from_zarr",
    "label_and_profile",
    "load",
    "open_cluster",
    "open_zarr_array",
    "profile_clusters",
    "save",
    "select_k",
    "silhouette_samples",
    "silhouette_score",
    "simplified_silhouette_score",
    "summarize",
]
__version__ = "0.1.0"

# The product's modules live in dkmeans.app; their earlier paths keep working.
from .app import cli, datasets, deploy, pipeline, plot

for _module in (cli, datasets, deploy, pipeline, plot):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[-1]}"] = _module
del _module
