"""dkmeans: k-means for data larger than memory, on Dask arrays and Zarr stores."""

from .cluster import KMeans
from .decomposition import PCA
from .io import from_zarr, open_zarr_array
from .metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_samples,
    silhouette_score,
    simplified_silhouette_score,
)
from .model_selection import KSelection, select_k
from .preprocessing import StandardScaler

__all__ = [
    "PCA",
    "KMeans",
    "KSelection",
    "StandardScaler",
    "calinski_harabasz_score",
    "davies_bouldin_score",
    "from_zarr",
    "open_zarr_array",
    "select_k",
    "silhouette_samples",
    "silhouette_score",
    "simplified_silhouette_score",
]
__version__ = "0.1.0"
