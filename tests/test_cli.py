"""The console script, end to end in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "dkmeans", *args], capture_output=True, text=True,
        timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def test_demo_runs_the_whole_job_on_a_local_cluster(tmp_path):
    proc = _run("demo", "--rows", "20000", "--workers", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "dashboard: http" in out
    assert "k selection (criterion: silhouette)" in out
    assert "k: 5" in out  # the five planted archetypes
    ari = float(out.split("adjusted Rand index): ")[1].split()[0])
    assert ari > 0.9
    store = tmp_path / "communities.zarr"
    labels = zarr.open_array(str(store / "cluster"), mode="r")
    assert labels.shape == (20000,)
    assert (tmp_path / "model" / "model.json").is_file()
    assert (tmp_path / "archetypes.md").read_text().startswith("| cluster |")
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "silhouette.png", "scatter.png", "centroids.png", "k_selection.png"}  # fmt: skip
    assert "Nanny" not in out + proc.stderr  # cluster logs do not flood the output


@pytest.fixture
def communities(tmp_path):
    from dkmeans.datasets import write_communities

    return write_communities(tmp_path / "c.zarr", 6000, chunks=1500, random_state=1)


def test_fit_predict_profile_info(tmp_path, communities):
    store = str(communities)
    model = tmp_path / "model"
    proc = _run("fit", store, "--k", "5", "--model-out", str(model), "-q")
    assert proc.returncode == 0, proc.stderr
    fitted = zarr.open_array(str(communities / "cluster"), mode="r")[:]
    # refuses to replace the labels without --overwrite, and writes nothing
    again = _run("fit", store, "--k", "5", "--model-out", str(tmp_path / "m2"), "-q")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert not (tmp_path / "m2").exists()
    proc = _run("predict", str(model), store, "--labels-out", f"{tmp_path / 'out.zarr'}:pred")
    assert proc.returncode == 0, proc.stderr
    predicted = zarr.open_array(str(tmp_path / "out.zarr" / "pred"), mode="r")[:]
    np.testing.assert_array_equal(predicted, fitted)
    proc = _run("profile", str(model), store, "--score", "retention_30d - churn_rate")
    assert proc.returncode == 0, proc.stderr
    assert "| cluster | rank | size | share | score |" in proc.stdout
    proc = _run("info", store)
    assert proc.returncode == 0, proc.stderr
    assert "shape: (6000, 10)" in proc.stdout and "feature_names: ['posts_per_day'" in proc.stdout


def test_fit_align_to_prints_what_changed(tmp_path, communities):
    from dkmeans.datasets import COMMUNITY_ARCHETYPES, write_communities

    labels = f"{tmp_path / 'labels.zarr'}:cluster"
    first = _run("fit", str(communities), "--k", "5", "--model-out", str(tmp_path / "m1"),
                 "--labels-out", labels, "-q")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "changes since the reference run" not in first.stdout
    means, share = COMMUNITY_ARCHETYPES["casual_chat"]
    moved = (*means[:4], means[4] + 0.7, *means[5:])  # engagement_rate drifts
    drifted = {**COMMUNITY_ARCHETYPES, "casual_chat": (moved, share)}
    week2 = write_communities(tmp_path / "w2.zarr", 6000, chunks=1500, random_state=1,
                              archetypes=drifted)  # fmt: skip
    proc = _run("fit", str(week2), "--k", "5", "--align-to", str(tmp_path / "m1"),
                "--labels-out", labels, "--overwrite", "--profile-out", str(tmp_path / "p"),
                "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    short = out[out.index("changes since the reference run") :]
    assert out.index("archetypes\n") < out.index("changes since the reference run")
    assert "label churn" in short and "records changed archetype" in short
    assert "new: none   vanished: none" in short
    assert "largest centre moves: " in short and "engagement_rate +" in short
    assert (tmp_path / "p" / "changes.md").is_file()


def test_select_k_prints_the_table_and_writes_nothing(communities):
    proc = _run("select-k", str(communities), "--k-range", "3:6", "--pca", "none", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "k selection" in proc.stdout
    assert not (communities / "cluster").exists()


def test_run_a_job_file(tmp_path, communities):
    job = tmp_path / "job.yaml"
    job.write_text(f"store: {communities}\nk: 4\npca: null\nwrite_labels: false\n")
    proc = _run("run", str(job), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "k: 4" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("info", "missing.zarr"), "No Zarr store"),
        (("fit", "{store}", "--variable", "nope"), "No variable 'nope'"),
        (("fit", "{store}", "--cluster", "{bad_yaml}"), "unknown key(s) ['n_wrokers']"),
        (("predict", "{tmp}/no-model", "{store}"), "not a dkmeans model directory"),
        (("fit", "{store}", "--k-range", "2-9"), "LOW:HIGH"),
        (("demo", "--rows", "0"), "--rows must be at least 1"),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, communities, args, message):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("kind: local\nn_wrokers: 2\n")
    fill = {"store": communities, "bad_yaml": bad_yaml, "tmp": tmp_path}
    proc = _run(*(a.format(**fill) for a in args))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert not (communities / "cluster").exists()


def test_low_confidence_stops_fit_or_is_printed(tmp_path):
    from .conftest import close_pair

    store = tmp_path / "pair.zarr"
    zarr.open_group(str(store), mode="w").create_array("features", data=close_pair()[0])
    args = (str(store), "--k-range", "2:10", "--no-scale", "--pca", "none", "-q")
    proc = _run("fit", *args, "--on-low-confidence", "error", "--model-out", str(tmp_path / "m"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("dkmeans: error: k choice is uncertain: silhouette")
    assert not (store / "cluster").exists() and not (tmp_path / "m").exists()
    proc = _run("select-k", *args)
    assert proc.returncode == 0, proc.stderr
    table, line = proc.stdout.split("k confidence: ")
    assert "stratified_silhouette" in table
    assert line.startswith("low — silhouette") and "elbow prefer" in line.splitlines()[0]


def test_predict_refuses_a_store_with_other_features(tmp_path, communities):
    model = tmp_path / "model"
    assert _run("fit", str(communities), "--k", "3", "--model-out", str(model), "--no-labels",
                "-q").returncode == 0  # fmt: skip
    other = tmp_path / "other.zarr"
    g = zarr.open_group(str(other), mode="w")
    g.create_array("features", data=np.zeros((100, 4), np.float32))
    proc = _run("predict", str(model), str(other))
    assert proc.returncode == 2
    assert "4 features but the model was trained on 10" in proc.stderr


def _bench(script: str, *args: str) -> list[dict]:
    """Run a benchmark script; its JSON lines (it must exit 0)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _by_system(lines: list[dict]) -> dict:
    return {line["system"]: line for line in lines}


@pytest.mark.slow
def test_bench_fit_runs_at_tiny_size(tmp_path):
    """The benchmark itself must not rot: run it in seconds at a tiny size."""
    by = _by_system(_bench(
        "bench_fit.py", "--rows", "6000", "--features", "4", "--k", "3", "--chunk", "1500",
        "--streamed-iters", "3", "--prune-iters", "6", "--late", "2", "--iter-iters", "3",
        "--systems",
        "floor-read,floor-gemm,sklearn,dkmeans-threaded,dkmeans-in-ram,dkmeans-threaded-streamed,"
        "pruning,"
        "iter-sklearn,iter-onedal,iter-dkmeans-threaded,iter-dkmeans-streamed,"
        "iter-dask-sum-threaded,iter-dkmeans-lloyd-threaded",
        "--store", str(tmp_path / "b.zarr"),
    ))  # fmt: skip
    assert {"system", "sklearn", "dkmeans-threaded", "summary"} <= set(by)
    assert "error" not in by["dkmeans-threaded"], by["dkmeans-threaded"]
    assert "error" not in by["pruning"], by["pruning"]
    assert by["pruning"]["same_result"] and len(by["pruning"]["elkan"]["skip_rate"]) == 6
    assert by["dkmeans-threaded"]["init_passes"] == 6
    for name in ("iter-sklearn", "iter-dkmeans-threaded", "iter-dkmeans-streamed",
                 "iter-dkmeans-lloyd-threaded"):  # fmt: skip
        assert by[name]["iterations"] == 3, by[name]  # the fixed-init section, tol=0
    assert "error" not in by["iter-onedal"]  # timed, or skipped without sklearnex
    assert by["iter-dask-sum-threaded"]["seconds_per_pass"] > 0, by["iter-dask-sum-threaded"]
    assert by["dkmeans-threaded"]["inertia_vs_sklearn"] < 1.05
    # the in-RAM systems' read of the store is timed apart from their fit
    assert by["sklearn"]["load_seconds"] > 0 and by["dkmeans-in-ram"]["load_seconds"] > 0
    assert by["dkmeans-in-ram"]["inertia_vs_sklearn"] < 1.05
    stored = by["summary"]["median_from_store_seconds"]
    assert stored["sklearn"] > by["sklearn"]["fit_seconds"]
    assert stored["dkmeans-threaded"] == by["dkmeans-threaded"]["fit_seconds"]


@pytest.mark.slow
def test_bench_out_of_core_runs_at_tiny_size(tmp_path):
    by = _by_system(_bench(
        "bench_out_of_core.py", "--rows", "40000", "--features", "8", "--chunk", "10000",
        "--iterations", "2", "--store", str(tmp_path / "o.zarr"),
    ))  # fmt: skip
    fit = by["dkmeans-streamed"]
    assert fit["data_passes"] == fit["seeding_passes"] + fit["iterations"] + 1
    assert not fit["worker_restarted"] and fit["worker_statuses"] == ["running"]
    assert by["summary"]["targets_met"]["under_limit"]


@pytest.mark.slow
def test_bench_scaling_runs_at_tiny_size(tmp_path):
    lines = _bench(
        "bench_scaling.py",
        "--rows",
        "8000,16000",
        "--chunk",
        "4000",
        "--iterations",
        "2",
        "--workers",
        "1",
        "--folder",
        str(tmp_path),
    )
    fits = [line for line in lines if line["system"] == "dkmeans-1-worker"]
    assert [f["rows"] for f in fits] == [8000, 16000]
    assert all(f["seconds_per_lloyd_pass"] > 0 for f in fits)
    assert "1_worker_16000_vs_8000" in lines[-1]


@pytest.mark.slow
def test_bench_large_k_runs_at_tiny_size(tmp_path):
    by = _by_system(_bench(
        "bench_large_k.py", "--rows", "6000", "--features", "8", "--k", "64", "--chunk", "1500",
        "--iterations", "2", "--store", str(tmp_path / "k.zarr"),
    ))  # fmt: skip
    assert "error" not in by["dkmeans"], by["dkmeans"]
    assert by["dkmeans"]["seeding_passes"] == 6 and by["dkmeans"]["empty_clusters"] == 0
    assert by["summary"]["inertia_vs_sklearn"] < 1.1


@pytest.mark.slow
def test_bench_gpu_runs_at_tiny_size_and_says_whether_a_gpu_ran(tmp_path):
    by = _by_system(_bench(
        "bench_gpu.py", "--rows", "6000", "--features", "4", "--k", "8", "--chunk", "1500",
        "--iterations", "3", "--store", str(tmp_path / "g.zarr"),
    ))  # fmt: skip
    assert "error" not in by["dkmeans-numpy"], by["dkmeans-numpy"]
    assert by["summary"]["gpu_ran"] == ("error" not in by["dkmeans-cupy"])
    assert by["dkmeans-numpy"]["inertia"] <= 1.1 * by["sklearn"]["inertia"]


@pytest.mark.slow
def test_bench_orchestration_runs_at_tiny_size(tmp_path):
    lines = _bench(
        "bench_orchestration.py", "--chunks", "20,40", "--schedulers", "threads",
        "--repeat", "1", "--folder", str(tmp_path),
    )  # fmt: skip
    runs = [line for line in lines if line["system"] == "orchestration"]
    assert [r["chunks"] for r in runs] == [20, 40]
    for r in runs:
        assert "error" not in r, r
        assert r["given"]["passes"] == 4 and r["kmeans||"]["seeding_passes"] == 6
        assert r["given"]["vs_dask_sum"] > 0 and r["client_peak_rss_mb"] > 0
    assert "threads_kmeans||_growth_20_to_40" in lines[-1]


@pytest.mark.slow
def test_bench_job_runs_at_tiny_size(tmp_path):
    by = _by_system(_bench(
        "bench_job.py", "--dataset", "communities", "--rows", "6000", "--chunk", "1000",
        "--k-max", "6", "--seeds", "1", "--store", str(tmp_path / "c.zarr"),
    ))  # fmt: skip
    for name in ("job-in-memory", "job-streamed", "job-streamed-full", "inertia-seeds"):
        assert "error" not in by[name], by[name]
    assert by["job-in-memory"]["reads"] == 1
    assert by["job-streamed"]["reads"] <= 4 < by["job-streamed-full"]["reads"]
    assert by["inertia-seeds"]["median_ratio"] < 1.05
    assert set(by["summary"]["targets_met"]) >= {"streamed_reads_le_4", "same_k_as_in_memory"}


@pytest.mark.slow
def test_bench_object_store_runs_at_tiny_size():
    by = _by_system(_bench("bench_object_store.py", "--rows", "8000", "--chunk", "2000",
                           "--no-job"))  # fmt: skip
    for name in ("local", "s3-fsspec"):
        assert "error" not in by[name] and by[name]["mb_per_s"] > 0
    assert "obstore_vs_fsspec_seconds" in by["summary"]


def test_plain_store_and_feature_names(tmp_path):
    """A store written with zarr.create_array: x0..x2 by default, or --feature-names."""
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(m, 0.3, (300, 3)) for m in (0, 5, 10, 15)])
    store = str(tmp_path / "plain.zarr")
    zarr.create_array(store, shape=data.shape, dtype="f8", chunks=(400, 3))[:] = data
    proc = _run("fit", store, "--k", "4", "--no-labels", "--pca", "none", "-v")
    assert proc.returncode == 0, proc.stderr
    assert "| distinctive | x0 | x1 | x2 |" in proc.stdout
    assert "carry no feature names: calling them x0 ... x2" in proc.stderr
    names = tmp_path / "names.txt"
    names.write_text("posts\nmembers\nage\n")
    for given in ("posts,members,age", f"@{names}"):
        proc = _run("fit", store, "--k", "4", "--no-labels", "--pca", "none",
                    "--feature-names", given)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "| distinctive | posts | members | age |" in proc.stdout
    proc = _run("fit", store, "--k", "4", "--feature-names", "a,b")
    assert proc.returncode == 2
    assert "feature_names must be 3 unique names" in proc.stderr


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch, capsys):
    from dkmeans.app import cli

    # a user error: dkmeans' own exception (here from a missing store), one line, code 2
    assert cli.main(["info", str(tmp_path / "nope.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dkmeans: error: No Zarr store") and err.count("\n") == 1

    # a bug: a ValueError or KeyError that is not dkmeans' propagates with its traceback
    for bug in (ValueError("an internal invariant broke"), KeyError("oops")):

        def broken(args, bug=bug):
            raise bug

        monkeypatch.setattr(cli, "_info", broken)
        with pytest.raises(type(bug)):
            cli.main(["info", str(tmp_path / "nope.zarr")])
