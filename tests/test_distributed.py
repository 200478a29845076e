"""The same random_state gives the same centres on any scheduler and worker count."""

import numpy as np
import pytest
from distributed import Client, LocalCluster

from dkmeans import KMeans, select_k

from .conftest import blobs


def _fit(data, **kw):
    km = KMeans(6, random_state=11, **kw).fit(data)
    return km.cluster_centers_, km.inertia_, km.n_iter_, np.asarray(km.labels_)


@pytest.mark.parametrize("persist", [True, False])
def test_threaded_equals_local_cluster_1_and_2_workers(zarr_blobs, persist):
    path, _X, _ = zarr_blobs
    threaded = _fit(str(path), persist=persist)
    for n_workers in (1, 2):
        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            got = _fit(str(path), persist=persist)
            # the Client is found without being passed, and the data went to its workers
            assert client.scheduler_info()["workers"]
        np.testing.assert_array_equal(got[0], threaded[0])
        assert got[1] == threaded[1]
        assert got[2] == threaded[2]
        np.testing.assert_array_equal(got[3], threaded[3])


def test_numpy_input_on_a_cluster_is_shipped_once_and_matches():
    X, _, _ = blobs(n=3000, d=4, k=6, std=1.0, seed=2)
    local = KMeans(6, random_state=3).fit(X)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):  # fmt: skip
        km = KMeans(6, random_state=3).fit(X)
    assert km.persisted_
    assert isinstance(km.labels_, np.ndarray)
    np.testing.assert_array_equal(km.cluster_centers_, local.cluster_centers_)


def test_select_k_same_on_local_cluster(zarr_blobs):
    path, _X, _ = zarr_blobs
    threaded = select_k(str(path), range(2, 7), persist=False, random_state=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):  # fmt: skip
        got = select_k(str(path), range(2, 7), persist=False, random_state=1)
    assert got.best_k == threaded.best_k
    for k in range(2, 7):
        np.testing.assert_array_equal(got.centers[k], threaded.centers[k])
    cols = ["inertia", "silhouette", "davies_bouldin", "calinski_harabasz"]
    np.testing.assert_array_equal(got.table[cols].to_numpy(), threaded.table[cols].to_numpy())
