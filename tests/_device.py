"""A stand-in for CuPy-backed dask arrays on a machine without a GPU.

Blocks are ``array_api_strict`` arrays (a minimal array API library, not NumPy) made
to behave like CuPy's where dkmeans could go wrong: implicit conversion to NumPy
raises (CuPy's ``__array__`` does), mixing with NumPy operands raises, and dask
concatenates them with their own library (dask registers ``cupy.concatenate`` the
same way).  The dask arrays keep NumPy dtypes, as CuPy-backed ones do.
"""

import array_api_strict as xs
import dask.array as da
import numpy as np
import pytest
from dask.array.dispatch import concatenate_lookup

DeviceArray = type(xs.asarray(0.0))


@concatenate_lookup.register(DeviceArray)
def _concatenate(arrays, axis=0):
    return xs.concat(list(arrays), axis=axis)


def _refuse(self, *args, **kwargs):
    raise TypeError("Implicit conversion to a NumPy array is not allowed (device array)")


@pytest.fixture
def device():
    """While active, device blocks refuse implicit conversion to NumPy."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DeviceArray, "__array__", _refuse)
        yield


def on_device(X: da.Array) -> da.Array:
    """The same dask array with every block moved to the 'device'."""
    return X.map_blocks(xs.asarray, meta=X._meta)


def host(a) -> np.ndarray:
    """A device array (or a dask array of device blocks) as NumPy."""
    if isinstance(a, da.Array):
        a = a.compute()
    return a if isinstance(a, np.ndarray) else np.from_dlpack(a)
