"""Cluster configs: every shipped YAML loads; LocalCluster starts from YAML; SLURM/PBS
job scripts render through dask-jobqueue without submitting anything."""

import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import yaml
from dkmeans.deploy import ClusterConfigError, job_script, load_cluster_config, open_cluster

from dkmeans import KMeans

from .conftest import blobs

CONFIGS = Path(__file__).resolve().parents[1] / "cluster_configs"


@pytest.mark.parametrize("name", ["local-threaded", "local-cluster", "address", "slurm", "pbs"])
def test_shipped_configs_load(name):
    config = load_cluster_config(CONFIGS / f"{name}.yaml")
    assert config["kind"] in {"threaded", "local", "address", "slurm", "pbs"}


def test_kubernetes_config_names_the_package_it_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_kubernetes", None)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(ClusterConfigError, match="pip install dask-kubernetes"):
        load_cluster_config(CONFIGS / "kubernetes.yaml")


def test_threaded_config_sets_the_scheduler():
    with open_cluster(CONFIGS / "local-threaded.yaml") as client:
        assert client is None
        assert dask.config.get("scheduler") == "threads"


def test_local_cluster_from_yaml_fits_like_the_threaded_scheduler(tmp_path):
    config = yaml.safe_load((CONFIGS / "local-cluster.yaml").read_text())
    config |= {"n_workers": 1, "processes": False, "dashboard_address": ":0"}
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config))
    X, _, _ = blobs(n=2000, d=3, k=3)
    Xd = da.from_array(X, chunks=(500, -1))
    threaded = KMeans(3, random_state=0).fit(Xd)
    with open_cluster(path) as client:
        assert client.dashboard_link.startswith("http")
        assert len(client.scheduler_info()["workers"]) == 1
        on_cluster = KMeans(3, random_state=0).fit(Xd)
    np.testing.assert_array_equal(on_cluster.cluster_centers_, threaded.cluster_centers_)


def test_a_configs_dask_settings_reach_a_local_clusters_workers_and_are_undone():
    key = "distributed.worker.profile.interval"
    before = dask.config.get(key)
    config = {"kind": "local", "n_workers": 1, "processes": True, "dashboard_address": None,
              "dask_config": {key: "123ms", "dkmeans.push-bytes": 1000}}  # fmt: skip
    with open_cluster(config) as client:
        assert dask.config.get(key) == "123ms"
        on_worker = client.run(lambda: [dask.config.get(k) for k in (key, "dkmeans.push-bytes")])
        assert list(on_worker.values()) == [["123ms", 1000]]  # a spawned worker process
    assert dask.config.get(key) == before
    with open_cluster({"kind": "threaded", "dask_config": {"dkmeans.push-bytes": 7}}):
        assert dask.config.get("dkmeans.push-bytes") == 7
    assert dask.config.get("dkmeans.push-bytes") != 7


def test_slurm_and_pbs_job_scripts_render_without_submitting():
    slurm = job_script(CONFIGS / "slurm.yaml")
    assert "#SBATCH -A my-project" in slurm and "#SBATCH --exclusive" in slurm
    assert "--nworkers 4" in slurm
    pbs = job_script(CONFIGS / "pbs.yaml")
    assert "#PBS -q workq" in pbs and "#PBS -l select=1:ncpus=16:mem=64GB" in pbs


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"kind": "local", "n_wrokers": 2}, r"unknown key\(s\) \['n_wrokers'\]"),
        ({"kind": "slurm", "cluster": {"cores": 4, "memroy": "1GB"}}, r"\['memroy'\]"),
        ({"kind": "address", "tls": {"ca": "x"}, "address": "tls://h:1"}, r"\['ca'\]"),
        ({"kind": "address"}, "needs address"),
        ({"kind": "yarn"}, "kind 'yarn' is not one of"),
        ({"n_workers": 2}, "'kind' key"),
        ({"kind": "local", "dask_config": ["a"]}, "dask_config must map dask setting names"),
    ],
)
def test_bad_configs_get_one_clear_error(config, match):
    with pytest.raises(ClusterConfigError, match=match):
        load_cluster_config(config)


def test_yaml_is_safe_loaded(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("kind: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ClusterConfigError, match="not valid YAML"):
        load_cluster_config(path)
