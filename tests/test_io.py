import numpy as np
import pytest
import zarr

from dkmeans import KMeans, from_zarr, open_zarr_array


def test_group_path_and_variable(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    X = np.random.default_rng(0).normal(size=(300, 3))
    g.create_array("features", shape=X.shape, chunks=(100, 3), dtype=X.dtype)[:] = X
    g.create_array("ids", shape=(300,), dtype="i8")[:] = np.arange(300)
    assert from_zarr(tmp_path / "g.zarr", variable="features").shape == (300, 3)
    # the only 2-D array in the group is found without a name
    assert open_zarr_array(tmp_path / "g.zarr").shape == (300, 3)
    a = KMeans(2, random_state=0).fit(str(tmp_path / "g.zarr" / "features"))
    b = KMeans(2, random_state=0).fit(from_zarr(tmp_path / "g.zarr", "features"))
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    with pytest.raises(KeyError, match="No variable 'nope'"):
        open_zarr_array(tmp_path / "g.zarr", "nope")


def test_ambiguous_group_names_the_arrays(tmp_path):
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("a", shape=(10, 2), dtype="f8")
    g.create_array("b", shape=(10, 2), dtype="f8")
    with pytest.raises(KeyError, match=r"\['a', 'b'\]"):
        open_zarr_array(tmp_path / "g.zarr")


def test_feature_names_from_zarr_attributes(tmp_path):
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=(50, 2), dtype="f8")
    z[:] = np.random.default_rng(0).normal(size=(50, 2))
    z.attrs["feature_names"] = ["posts", "churn"]
    km = KMeans(2, random_state=0).fit(z)
    assert list(km.feature_names_in_) == ["posts", "churn"]
