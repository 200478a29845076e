"""Stable cluster IDs: align_labels on permuted, grown and re-preprocessed models."""

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

from dkmeans import PCA, KMeans, StandardScaler, align_labels

from .conftest import blobs


@pytest.fixture(scope="module")
def data():
    X, _, _ = blobs(n=3000, d=4, k=5, std=0.5, seed=11)
    return X * np.array([1.0, 10.0, 100.0, 1000.0])


def test_a_permuted_model_gets_the_reference_ids(data):
    ref = KMeans(5, random_state=0).fit(data)
    perm = np.array([3, 0, 4, 1, 2])
    new = KMeans(5, init=ref.cluster_centers_[perm], n_init=1).fit(data)
    assert not np.array_equal(new.labels_, ref.labels_)
    align_labels(new, ref)
    np.testing.assert_array_equal(new.cluster_ids_, np.arange(5))
    np.testing.assert_array_equal(new.labels_, ref.labels_)
    np.testing.assert_array_equal(new.predict(data), ref.predict(data))
    # the centres are reordered to the IDs: each sits nearest to its reference centre
    d = ((new.cluster_centers_[:, None] - ref.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(d.argmin(axis=1), np.arange(5))


def test_extra_clusters_get_new_ids_and_aligned_twice_keeps_them(data):
    ref = KMeans(5, random_state=0).fit(data)
    grown = align_labels(KMeans(6, random_state=1).fit(data), ref)
    assert set(grown.cluster_ids_) == {0, 1, 2, 3, 4, 5}
    # an aligned model can itself be the next reference
    perm = np.array([5, 2, 0, 4, 1, 3])
    nxt = KMeans(6, init=grown.cluster_centers_[perm], n_init=1).fit(data)
    align_labels(nxt, grown)
    # Lloyd moves the restarted centres a little: a few boundary rows may switch
    assert np.mean(nxt.predict(data) == grown.predict(data)) > 0.99


def test_fewer_clusters_keep_gaps_in_their_ids(data):
    ref = KMeans(5, random_state=0).fit(data)
    small = align_labels(KMeans(4, random_state=0).fit(data), ref)
    assert len(small.cluster_ids_) == 4 and set(small.cluster_ids_) < set(range(5))
    assert set(np.unique(small.predict(data))) == set(small.cluster_ids_)


def test_pipelines_with_different_pca_compare_in_feature_units(data):
    ref = make_pipeline(StandardScaler(), PCA(3), KMeans(5, random_state=0)).fit(data)
    new = make_pipeline(StandardScaler(), PCA(4), KMeans(5, random_state=5)).fit(data)
    align_labels(new, ref)
    assert np.mean(new.predict(data) == ref.predict(data)) > 0.99


def test_max_distance_turns_far_matches_into_new_clusters(data):
    ref = KMeans(5, random_state=0).fit(data)
    far = KMeans(5, init=ref.cluster_centers_ + 1e6, n_init=1, max_iter=1).fit(data)
    align_labels(far, ref, max_distance=1.0)
    assert far.cluster_ids_.min() >= 5


def test_features_must_match(data):
    ref = KMeans(3, random_state=0).fit(data)
    with pytest.raises(ValueError, match="4 features and the reference 3"):
        align_labels(ref, KMeans(3, random_state=0).fit(data[:, :3]))
