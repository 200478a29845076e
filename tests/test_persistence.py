"""save/load: round trips with identical predictions, no pickle, format version checks."""

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from dkmeans import PCA, KMeans, StandardScaler, load, save
from dkmeans.persistence import data_fingerprint

from .conftest import blobs


@pytest.fixture(scope="module")
def frame():
    X, _, _ = blobs(n=1500, d=4, k=3, std=0.7, seed=4)
    return pd.DataFrame(X * [1, 5, 50, 500], columns=["posts", "members", "age", "reach"])


def test_pipeline_round_trip_predicts_identically(tmp_path, frame):
    pipe = make_pipeline(
        StandardScaler(), PCA(0.9), KMeans("auto", k_range=range(2, 6), random_state=0)
    ).fit(frame)
    save(pipe, tmp_path / "m", fingerprint=data_fingerprint(frame), metadata={"week": 47})
    back = load(tmp_path / "m")
    assert [name for name, _ in back.steps] == [name for name, _ in pipe.steps]
    np.testing.assert_array_equal(back.predict(frame), pipe.predict(frame))
    Xd = da.from_array(frame.to_numpy(), chunks=(400, -1))
    np.testing.assert_array_equal(back.predict(Xd).compute(), pipe.predict(frame))
    km = back[-1]
    assert km.n_features_in_ == pipe[-1].n_features_in_
    assert list(back[0].feature_names_in_) == list(frame.columns)
    assert km.k_table_["k"].tolist() == [2, 3, 4, 5]
    assert km.metadata_ == {"week": 47}
    assert km.fingerprint_["n_samples"] == 1500 and len(km.fingerprint_["sha256"]) == 64
    assert back[1].n_components_ == pipe[1].n_components_


def test_kmeans_save_method_and_aligned_ids(tmp_path, frame):
    from dkmeans import align_labels

    ref = KMeans(3, random_state=0).fit(frame)
    km = align_labels(KMeans(4, random_state=1).fit(frame), ref)
    km.save(tmp_path / "k")
    back = load(tmp_path / "k")
    np.testing.assert_array_equal(back.cluster_ids_, km.cluster_ids_)
    np.testing.assert_array_equal(back.predict(frame), km.predict(frame))
    np.testing.assert_array_equal(back.cluster_centers_, km.cluster_centers_)
    assert back.cluster_centers_.dtype == km.cluster_centers_.dtype


def test_nothing_is_pickled(tmp_path, frame):
    save(KMeans(2, random_state=0).fit(frame), tmp_path / "k")
    files = {p.suffix for p in (tmp_path / "k").rglob("*") if p.is_file()}
    assert files == {".json", ".npy"}
    for npy in (tmp_path / "k" / "arrays").iterdir():
        np.load(npy, allow_pickle=False)  # raises if an object array slipped in


def test_overwrite_refused_and_atomic(tmp_path, frame):
    km = KMeans(2, random_state=0).fit(frame)
    save(km, tmp_path / "k")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save(km, tmp_path / "k")
    with pytest.raises(ValueError, match="not fitted"):
        save(KMeans(2), tmp_path / "k2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no temporary left behind


def test_unknown_format_version_is_refused(tmp_path, frame):
    save(KMeans(2, random_state=0).fit(frame), tmp_path / "k")
    manifest = tmp_path / "k" / "model.json"
    doc = json.loads(manifest.read_text())
    doc["format_version"] = 99
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="format version 99; this dkmeans reads version 1"):
        load(tmp_path / "k")
    with pytest.raises(FileNotFoundError, match="not a dkmeans model directory"):
        load(tmp_path)


def test_a_users_subclass_does_not_take_over_the_saved_class(tmp_path):
    import numpy as np

    import dkmeans

    class KMeans(dkmeans.KMeans):  # a user's subclass of the same name
        pass

    X = np.random.default_rng(0).normal(size=(60, 2))
    path = dkmeans.KMeans(2, random_state=0).fit(X).save(tmp_path / "m")
    assert type(dkmeans.load(path)) is dkmeans.KMeans
    assert KMeans.__module__ != dkmeans.KMeans.__module__  # the clash the test is about
