"""The archetype job end to end on small stores (threaded scheduler and LocalCluster)."""

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from dkmeans.datasets import write_communities
from dkmeans.pipeline import Job, run
from sklearn.metrics import adjusted_rand_score

from dkmeans import load
from dkmeans.exceptions import DKMeansError, LowConfidenceError

from .conftest import close_pair, write_store


@pytest.fixture
def store(tmp_path):
    return write_communities(tmp_path / "c.zarr", 8000, chunks=2000, random_state=3)


def test_job_recovers_the_planted_archetypes_and_writes_everything(tmp_path, store):
    job = Job(
        store=str(store), k_range=[2, 8], model_out=str(tmp_path / "model"),
        profile_out=str(tmp_path / "profiles"), plots=str(tmp_path / "plots"),
        score={"retention_30d": 1.0, "churn_rate": -1.0},
    )  # fmt: skip
    result = run(job)
    km = result.kmeans
    assert result.selection.best_k == km.cluster_centers_.shape[0] == 5
    assert [name for name, _ in result.model.steps] == ["scale", "pca", "kmeans"]
    ds = xr.open_zarr(str(store), consolidated=False)
    planted = ds["archetype"].values
    found = ds["cluster"].values
    assert ds["cluster"].dims == ds["archetype"].dims
    assert adjusted_rand_score(planted[planted >= 0], found[planted >= 0]) > 0.95
    # the archetypes are profiled on the ORIGINAL features, in their units
    df = pd.DataFrame(ds["features"].values.astype(np.float64), columns=ds["feature"].values)
    expected = df.groupby(found).mean()
    np.testing.assert_allclose(result.archetypes.means.to_numpy(), expected.to_numpy(),
                               rtol=1e-9)  # fmt: skip
    assert result.archetypes.table["score"].is_monotonic_decreasing
    # the saved model predicts the written labels
    model = load(tmp_path / "model")
    np.testing.assert_array_equal(np.asarray(model.predict(ds["features"])), found)
    assert model[-1].k_table_["k"].tolist() == list(range(2, 9))
    assert (tmp_path / "profiles" / "archetypes.csv").is_file()
    assert len(result.plot_paths) == 4


def test_refuses_to_replace_outputs_before_doing_any_work(tmp_path, store):
    run(Job(store=str(store), k=3, pca=None))
    before = zarr.open_array(str(store / "cluster"), mode="r")[:]
    with pytest.raises(FileExistsError, match="overwrite"):
        run(Job(store=str(store), k=4, pca=None, model_out=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()
    np.testing.assert_array_equal(zarr.open_array(str(store / "cluster"), mode="r")[:], before)
    run(Job(store=str(store), k=4, pca=None, overwrite=True))
    assert zarr.open_array(str(store / "cluster"), mode="r")[:].max() == 3


def test_align_to_keeps_cluster_ids_across_retrains(tmp_path, store):
    first = run(Job(store=str(store), k=5, model_out=str(tmp_path / "w1"), write_labels=False))
    second = run(
        Job(
            store=str(store),
            k=5,
            random_state=9,
            align_to=str(tmp_path / "w1"),
            labels_out=f"{tmp_path / 'w2.zarr'}:cluster",
            pca=3,
        )
    )
    X = xr.open_zarr(str(store), consolidated=False)["features"]
    a = np.asarray(first.model.predict(X))
    b = zarr.open_array(str(tmp_path / "w2.zarr" / "cluster"), mode="r")[:]
    assert np.mean(a == b) > 0.97  # same archetype, same ID (PCA and seed differ)
    assert list(second.archetypes.means.index) == sorted(second.kmeans.cluster_ids_)


def test_job_from_yaml(tmp_path, store):
    path = tmp_path / "job.yaml"
    path.write_text(f"store: {store}\nk: 3\nk_range: [2, 5]\npca: 0.9\nscore: churn_rate\n"
                    "on_low_confidence: error\n")  # fmt: skip
    job = Job.from_yaml(path)
    assert job.k == 3 and job.pca == 0.9 and job.score == "churn_rate"
    assert job.on_low_confidence == "error"
    path.write_text(f"store: {store}\nkk: 3\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['kk'\]"):
        Job.from_yaml(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "positive int"),
        ({"k_range": [5, 2]}, "low <= high"),
        ({"pca": 1.5}, "variance share"),
        ({"criterion": "gap"}, "not one of"),
        ({"fit_sample": 10, "k_range": [2, 12]}, "above the largest k"),
        ({"on_low_confidence": "ignore"}, "on_low_confidence='ignore' is not one of"),
    ],
)
def test_bad_jobs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Job(store="x.zarr", **kwargs)


def test_store_without_feature_names(tmp_path, caplog):
    """A plain zarr.create_array store: x0, x1 (logged), or the names given."""
    arr = zarr.create_array(str(tmp_path / "x.zarr"), shape=(50, 2), dtype="f4")
    arr[:] = np.random.default_rng(0).normal(size=(50, 2))
    with caplog.at_level(logging.INFO, logger="dkmeans"):
        plain = run(Job(store=str(tmp_path / "x.zarr"), k=2, pca=None,
                        labels_out=str(tmp_path / "l.zarr")))  # fmt: skip
    assert list(plain.archetypes.means.columns) == ["x0", "x1"]
    assert "carry no feature names: calling them x0 ... x1" in caplog.text
    result = run(Job(store=str(tmp_path / "x.zarr"), k=2, pca=None, feature_names=["a", "b"],
                     labels_out=str(tmp_path / "l.zarr"), overwrite=True))  # fmt: skip
    assert list(result.archetypes.means.columns) == ["a", "b"]
    np.testing.assert_allclose(result.archetypes.means.to_numpy(),
                               plain.archetypes.means.to_numpy())  # fmt: skip
    with pytest.raises(ValueError, match="feature_names must be 2 unique names"):
        run(Job(store=str(tmp_path / "x.zarr"), k=2, feature_names=["a", "a"]))


def test_on_a_local_cluster_matches_threaded(store):
    from distributed import Client, LocalCluster

    threaded = run(Job(store=str(store), k=5, write_labels=False))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster):  # fmt: skip
        on_cluster = run(Job(store=str(store), k=5, write_labels=False))
    np.testing.assert_array_equal(
        on_cluster.kmeans.cluster_centers_, threaded.kmeans.cluster_centers_
    )
    pd.testing.assert_frame_equal(on_cluster.archetypes.means, threaded.archetypes.means)


@pytest.fixture
def counted(monkeypatch):
    """The job's store opened through a chunk-read counter; returns the counters."""
    from zarr.storage import LocalStore

    from dkmeans import io

    from .conftest import CountingStore

    stores = []

    def open_counted(path, variable=None, *, storage_options=None):
        store = CountingStore(LocalStore(str(path), read_only=True))
        stores.append(store)
        node = zarr.open(store=store, mode="r")
        return node[variable or "features"] if isinstance(node, zarr.Group) else node

    monkeypatch.setattr(io, "open_zarr_array", open_counted)
    return stores


def _reads(stores, n_chunks: int) -> float:
    return sum(s.reads_of("features") for s in stores) / n_chunks


@pytest.mark.parametrize("k", ["auto", 5])
def test_a_streamed_job_reads_the_store_at_most_four_times(tmp_path, counted, k):
    store = write_communities(tmp_path / "c.zarr", 40_000, chunks=5000, random_state=1)
    kept = run(Job(store=str(store), k=k, k_range=[2, 8], write_labels=False))
    assert _reads(counted, 8) == 1  # kept in memory: read once
    counted.clear()
    streamed = run(Job(store=str(store), k=k, k_range=[2, 8], persist=False, fit_sample=8000,
                       overwrite=True))  # fmt: skip
    assert _reads(counted, 8) <= 4
    km = streamed.kmeans
    # the gathering pass, the polish, the final pass: every one a read of the store
    assert km.n_passes_ == 1 + km.n_iter_ + 1 == _reads(counted, 8)
    assert kept.kmeans.n_clusters_ == km.n_clusters_ == 5
    if k == "auto":
        assert streamed.selection.best_k == kept.selection.best_k
    assert km.inertia_ <= 1.001 * kept.kmeans.inertia_
    # the labels written in the final pass are the model's predictions
    ds = xr.open_zarr(str(store), consolidated=False)
    np.testing.assert_array_equal(ds["cluster"].values, streamed.model.predict(ds["features"]))
    counts = np.bincount(ds["cluster"].values, minlength=5)
    np.testing.assert_array_equal(streamed.archetypes.sizes.to_numpy(), counts)


def test_fit_sample_none_streams_every_pass_as_before(tmp_path, counted):
    store = write_communities(tmp_path / "c.zarr", 8000, chunks=1000, random_state=1)
    result = run(Job(store=str(store), k=4, persist=False, fit_sample=None, n_init=1,
                     write_labels=False))  # fmt: skip
    km = result.kmeans
    # gather, then seeding and every Lloyd iteration on all rows, then the final pass;
    # k-means|| reads the chunk of its first centre once more
    assert _reads(counted, 8) == km.n_passes_ + 1 / 8
    assert km.n_seeding_passes_ >= 2


def test_a_retrain_counts_the_churn_in_its_final_pass_without_an_extra_read(tmp_path, counted):
    store = write_communities(tmp_path / "c.zarr", 16_000, chunks=2000, random_state=2)
    first = run(Job(store=str(store), k=5, persist=False, fit_sample=4000,
                    model_out=str(tmp_path / "m1")))  # fmt: skip
    assert first.changes is None
    before = zarr.open_array(str(store / "cluster"), mode="r")[:]
    counted.clear()
    second = run(Job(store=str(store), k=5, persist=False, fit_sample=4000, random_state=5,
                     overwrite=True, align_to=str(tmp_path / "m1")))  # fmt: skip
    # the previous labels are read inside the final pass, not in a pass of their own
    assert _reads(counted, 8) == second.kmeans.n_passes_
    after = zarr.open_array(str(store / "cluster"), mode="r")[:]
    assert second.changes.churn.n_changed == int(np.sum(before != after))
    assert second.changes.churn_rate == pytest.approx(np.mean(before != after))
    assert second.changes.new == second.changes.vanished == []


def test_profile_files_are_all_replaced_or_none(tmp_path, store, monkeypatch):
    from dkmeans.changes import ArchetypeChanges

    out = tmp_path / "profiles"
    run(Job(store=str(store), k=4, pca=None, model_out=str(tmp_path / "m1"), profile_out=str(out)))
    before = {p.name: p.read_text() for p in out.iterdir()}

    def fail(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(ArchetypeChanges, "to_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        run(Job(store=str(store), k=5, pca=None, overwrite=True, profile_out=str(out),
                align_to=str(tmp_path / "m1")))  # fmt: skip
    assert {p.name: p.read_text() for p in out.iterdir()} == before  # nothing half-written
    monkeypatch.undo()
    result = run(Job(store=str(store), k=5, pca=None, overwrite=True, profile_out=str(out),
                     align_to=str(tmp_path / "m1")))  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "archetypes.csv", "archetypes.md", "changes.csv", "changes.md"]  # fmt: skip
    assert len(result.changes.new) == 1  # k went from 4 to 5


def test_align_max_distance_makes_far_clusters_new(tmp_path, store):
    run(Job(store=str(store), k=5, model_out=str(tmp_path / "m1"), write_labels=False))
    # fewer PCA components: centres a little apart, so every one is farther than this
    result = run(Job(store=str(store), k=5, pca=3, write_labels=False,
                     align_to=str(tmp_path / "m1"), align_max_distance=1e-6))  # fmt: skip
    assert len(result.changes.new) == len(result.changes.vanished) == 5
    with pytest.raises(ValueError, match="align_max_distance=-1"):
        Job(store="x.zarr", align_max_distance=-1)


def test_align_to_a_model_of_other_features_is_refused_before_any_work(tmp_path, store):
    run(Job(store=str(store), k=3, pca=None, model_out=str(tmp_path / "m1"), write_labels=False))
    names = [f"f{i}" for i in range(10)]
    with pytest.raises(ValueError, match="profiled on features"):
        run(Job(store=str(store), k=3, pca=None, feature_names=names,
                align_to=str(tmp_path / "m1")))  # fmt: skip
    assert not (store / "cluster").exists()


@pytest.fixture
def close_pair_store(tmp_path):
    """Issue 16's blobs (the silhouette says 5, the elbow 6) in a small Zarr store."""
    return write_store(tmp_path / "pair.zarr", close_pair()[0], 340)


def _pair_job(store, tmp_path, **kwargs) -> Job:
    return Job(store=str(store), k_range=[2, 10], scale=False, pca=None,
               model_out=str(tmp_path / "model"), profile_out=str(tmp_path / "profiles"),
               labels_out=f"{tmp_path / 'labels.zarr'}:cluster", **kwargs)  # fmt: skip


def test_low_confidence_error_stops_before_writing_anything(tmp_path, close_pair_store):
    job = _pair_job(close_pair_store, tmp_path, on_low_confidence="error")
    with pytest.raises(LowConfidenceError, match=r"silhouette.* prefer.* 5.*elbow prefer.* 6") as e:
        run(job)
    assert isinstance(e.value, DKMeansError) and e.value.confidence.low
    assert not (tmp_path / "labels.zarr").exists()
    assert not (tmp_path / "model").exists() and not (tmp_path / "profiles").exists()
    assert not list(tmp_path.glob(".model*"))  # no half-written model either


def test_low_confidence_warns_once_and_the_model_keeps_it(tmp_path, close_pair_store, caplog):
    with caplog.at_level(logging.WARNING, logger="dkmeans"):
        result = run(_pair_job(close_pair_store, tmp_path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [result.selection.confidence.warning]
    assert warnings[0].name == "dkmeans.app.pipeline"
    assert "k choice is uncertain" in warnings[0].getMessage()
    km = load(tmp_path / "model")[-1]
    saved = km.metadata_["k_confidence"]
    assert saved["level"] == "low" and saved["warning"] == result.selection.confidence.warning
    assert saved["preferred"] == result.selection.preferred
    assert saved["preferred"]["silhouette"] == 5 and saved["preferred"]["elbow"] == 6
    assert saved["stability"] == pytest.approx(result.selection.stability)
    assert km.k_confidence_ == result.selection.confidence
    assert km.metadata_["job"]["on_low_confidence"] == "warn"
