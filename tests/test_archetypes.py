"""Archetype profiles against a pandas groupby; ranking scores; output formats."""

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from dkmeans.datasets import make_communities

from dkmeans import profile_clusters


@pytest.fixture(scope="module")
def data():
    X, y, names, _, _ = make_communities(5000, chunks=1000, random_state=2)
    labels = np.where(y.compute() < 0, 0, y.compute())
    return X, labels, names


def test_profiles_match_a_pandas_groupby(data):
    X, labels, names = data
    arch = profile_clusters(X, da.from_array(labels, chunks=700), feature_names=names)
    df = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=names)
    groups = df.groupby(labels)
    np.testing.assert_allclose(arch.means.to_numpy(), groups.mean().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(arch.stds.to_numpy(), groups.std(ddof=0).to_numpy(), rtol=1e-9)
    np.testing.assert_array_equal(arch.sizes.to_numpy(), groups.size().to_numpy())
    z = (groups.mean() - df.mean()) / df.std(ddof=0)
    np.testing.assert_allclose(arch.z.to_numpy(), z.to_numpy(), rtol=1e-9, atol=1e-12)
    # the most distinctive feature of each cluster is the largest |z|
    for c in arch.z.index:
        assert arch.distinctive(c).startswith(z.loc[c].abs().idxmax())


def test_weighted_profiles_equal_repeated_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    labels = rng.integers(3, size=300)
    w = rng.integers(1, 4, size=300)
    weighted = profile_clusters(X, labels, sample_weight=w.astype(float))
    repeated = profile_clusters(np.repeat(X, w, axis=0), np.repeat(labels, w))
    np.testing.assert_allclose(weighted.means, repeated.means, rtol=1e-12)
    np.testing.assert_allclose(weighted.stds, repeated.stds, rtol=1e-10)


def test_scores_rank_the_clusters(data):
    X, labels, names = data
    by_weights = profile_clusters(X, labels, feature_names=names,
                                  score={"retention_30d": 1.0, "churn_rate": -1.0})  # fmt: skip
    expected = by_weights.z["retention_30d"] - by_weights.z["churn_rate"]
    np.testing.assert_allclose(by_weights.score, expected)
    table = by_weights.table
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert table["score"].is_monotonic_decreasing
    by_expr = profile_clusters(X, labels, feature_names=names,
                               score="engagement_rate * member_count")  # fmt: skip
    means = by_expr.means
    np.testing.assert_allclose(by_expr.score, means["engagement_rate"] * means["member_count"])
    by_size = profile_clusters(X, labels, feature_names=names)
    assert by_size.table["size"].is_monotonic_decreasing


def test_markdown_and_csv(tmp_path, data):
    X, labels, names = data
    arch = profile_clusters(X, labels, feature_names=names, cluster_ids=[3, 5, 6, 7, 9],
                            n_clusters=5)  # fmt: skip
    md = arch.to_markdown()
    assert md.splitlines()[0].startswith("| cluster | rank | size | share | distinctive |")
    assert len(md.splitlines()) == 2 + 5
    arch.to_csv(tmp_path / "a.csv")
    back = pd.read_csv(tmp_path / "a.csv", index_col="cluster")
    assert sorted(back.index) == [3, 5, 6, 7, 9]
    np.testing.assert_allclose(back.loc[arch.means.index, names], arch.means, rtol=1e-12)


def test_labels_given_as_cluster_ids(data):
    X, labels, names = data
    ids = np.array([2, 4, 5, 8, 11])
    by_id = profile_clusters(X, ids[labels], feature_names=names, cluster_ids=ids)
    by_pos = profile_clusters(X, labels, feature_names=names)
    np.testing.assert_allclose(by_id.means.to_numpy(), by_pos.means.to_numpy())
    assert list(by_id.means.index) == list(ids)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"score": {"nope": 1.0}}, KeyError, "unknown features"),
        ({"score": "nope * 2"}, ValueError, "could not be evaluated"),
        ({"feature_names": ["a", "a", "b"]}, ValueError, "unique names"),
        ({"cluster_ids": [1, 2]}, ValueError, "cluster_ids must have 3"),
    ],
)
def test_bad_input(kwargs, error, match):
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(error, match=match):
        profile_clusters(X, np.arange(30) % 3, n_clusters=3, **kwargs)
