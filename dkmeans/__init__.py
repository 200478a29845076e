"""dkmeans: k-means for data larger than memory, on Dask arrays and Zarr stores."""

from .cluster import KMeans
from .io import from_zarr, open_zarr_array
from .preprocessing import StandardScaler

__all__ = ["KMeans", "StandardScaler", "from_zarr", "open_zarr_array"]
__version__ = "0.1.0"
