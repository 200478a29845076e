"""The dashboard a Client links to serves distributed's Bokeh app, and a fit's tasks
show there under readable stage names."""

import importlib.util
import tomllib
import urllib.request
from pathlib import Path

import dask.array as da
import pytest
from distributed import Client, LocalCluster

import dkmeans

from .conftest import blobs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def client():
    # tcp in-process: the link names 127.0.0.1, where the dashboard listens (an inproc
    # scheduler's link names the machine's address, which a 127.0.0.1 dashboard refuses)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                     host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


def test_bokeh_is_a_dependency():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.replace(" ", "").startswith("bokeh>=") for d in deps)


def test_dashboard_link_serves_the_bokeh_app(client):
    link = client.dashboard_link
    assert link.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(link, timeout=30) as page:
        status, url, body = page.status, page.url, page.read().decode()
    assert status == 200
    assert url.endswith("/status")
    assert "Dask needs bokeh" not in body
    assert "static/js/bokeh.min.js" in body  # the Bokeh runtime
    assert '<script type="application/json"' in body  # the document it renders


def test_fit_tasks_have_readable_prefixes(client):
    X, _, _ = blobs(n=4000, d=4, k=3, seed=1)
    # in-memory blocks, streamed (not persisted) and fitted on all rows, so the
    # k-means|| rounds and the Lloyd passes run as graphs on the cluster
    km = dkmeans.KMeans(3, init="k-means||", random_state=0, persist=False, fit_sample=None)
    km.fit(da.from_array(X, chunks=500))
    assert km.n_iter_ >= 1
    prefixes = set(
        client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    )
    ours = {p for p in prefixes if p.startswith("dkmeans")}
    assert {
        "dkmeans-kmeans-parallel-round",
        "dkmeans-kmeans-parallel-weights",
        "dkmeans-lloyd",
        "dkmeans-labels",
    } <= ours, sorted(prefixes)
    # every dkmeans task is grouped under its stage, none under the bare package name
    assert "dkmeans" not in ours, sorted(prefixes)


def _screenshot_script():
    path = ROOT / "notebooks" / "screenshot_dashboard.py"
    spec = importlib.util.spec_from_file_location("screenshot_dashboard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_screenshot_script_skips_without_a_browser(monkeypatch, tmp_path, capsys):
    script = _screenshot_script()
    looked = []
    monkeypatch.setattr(script.shutil, "which", lambda name: looked.append(name))
    out = tmp_path / "dashboard.png"
    assert script.main(["--out", str(out)]) == 0
    assert looked == ["chromium", "chromium-browser", "google-chrome"]
    assert capsys.readouterr().out.startswith("skipped: no chromium")
    assert not out.exists()
    # the first browser found is the one used
    found = {"google-chrome": "/opt/chrome", "chromium-browser": "/usr/bin/chromium-browser"}
    monkeypatch.setattr(script.shutil, "which", found.get)
    assert script.find_browser() == "/usr/bin/chromium-browser"
