"""A screenshot of the Dask dashboard during a streamed dkmeans fit (the README's image).

    python notebooks/screenshot_dashboard.py [--out notebooks/dashboard.png]

Writes a generated communities store (``dkmeans.datasets.write_communities``, as
``dkmeans demo`` does) to a temporary folder, starts a ``LocalCluster`` with its
dashboard, fits k-means on the store in a background thread (streamed: the store is
read on every pass, never kept in memory) and, ``--wait`` seconds into the fit, takes a
PNG of the dashboard's ``/status`` page with headless Chromium.  Without a Chromium on
PATH it says so and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DEFAULT_OUT = Path(__file__).resolve().parent / "dashboard.png"


def find_browser() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def live_page(browser: str, url: str, *, size=(1400, 900)):
    """Headless Chromium showing ``url``; yields ``capture(path)``, which writes a PNG of
    the page as it is at that moment.

    The dashboard draws what its websocket brings in real time, which a plain
    ``--screenshot`` (taken as soon as the page's virtual time runs out) never waits
    for; so the page stays open, and DevTools' ``Page.captureScreenshot`` takes the shot.
    """
    with tempfile.TemporaryDirectory(prefix="dkmeans-chromium-") as profile:
        cmd = [
            browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url,
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = _devtools_port(Path(profile), proc)

            def capture(out: Path) -> None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(asyncio.run(_capture(port)))

            yield capture
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """The DevTools port Chromium chose (it writes it to DevToolsActivePort)."""
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with code {proc.returncode}")
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int(active.read_text().split()[0])
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args[0]} opened no DevTools port in {timeout:.0f}s")


async def _capture(port: int) -> bytes:
    from tornado.websocket import websocket_connect

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
        pages = [t for t in json.load(r) if t.get("type") == "page"]
    if not pages:
        raise RuntimeError("Chromium shows no page to capture")
    ws = await websocket_connect(pages[0]["webSocketDebuggerUrl"])
    try:
        request = {"id": 1, "method": "Page.captureScreenshot", "params": {"format": "png"}}
        await ws.write_message(json.dumps(request))
        while True:
            message = await asyncio.wait_for(ws.read_message(), timeout=60)
            if message is None:
                raise RuntimeError("DevTools closed the connection")
            reply = json.loads(message)
            if reply.get("id") == 1:
                if "error" in reply:
                    raise RuntimeError(f"DevTools: {reply['error']}")
                return base64.b64decode(reply["result"]["data"])
    finally:
        ws.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    p.add_argument("--rows", type=int, default=3_000_000, help="rows of the generated store")
    p.add_argument("--k", type=int, default=8, help="clusters to fit")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster workers (1 thread each)")
    p.add_argument("--wait", type=float, default=14.0,
                   help="seconds into the fit when the screenshot is taken")  # fmt: skip
    args = p.parse_args(argv)

    browser = find_browser()
    if browser is None:
        print(f"skipped: no {', '.join(BROWSERS)} on PATH to take the screenshot with")
        return 0

    from distributed import Client, LocalCluster

    import dkmeans
    from dkmeans.app.datasets import write_communities
    from dkmeans.io import from_zarr

    with tempfile.TemporaryDirectory(prefix="dkmeans-screenshot-") as tmp:
        store = Path(tmp) / "communities.zarr"
        t = time.perf_counter()
        write_communities(store, args.rows, chunks=max(10_000, args.rows // 32))
        print(f"store: {args.rows:,} rows, {time.perf_counter() - t:.1f}s to write", flush=True)
        with (
            LocalCluster(n_workers=args.workers, threads_per_worker=1,
                         dashboard_address="127.0.0.1:0") as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            print(f"dashboard: {client.dashboard_link}", flush=True)
            km = dkmeans.KMeans(args.k, random_state=0, persist=False, fit_sample=None)
            failed = []

            def fit():
                try:
                    km.fit(from_zarr(store, "features"))
                except BaseException as exc:  # reported by the main thread
                    failed.append(exc)

            t = time.perf_counter()
            # a daemon: a failed screenshot closes the cluster and leaves, fit or not
            worker = threading.Thread(target=fit, name="dkmeans-fit", daemon=True)
            with live_page(browser, client.dashboard_link) as capture:
                worker.start()
                worker.join(args.wait)
                if not worker.is_alive():
                    print(f"the fit ended before {args.wait}s: more --rows or less --wait")
                capture(args.out)
                shot = time.perf_counter() - t
            worker.join()
            if failed:
                raise failed[0]
            print(f"fit: inertia {km.inertia_:.6g}, {km.n_iter_} Lloyd iterations, "
                  f"{km.n_passes_} passes, "
                  f"{time.perf_counter() - t:.1f}s; screenshot at {shot:.1f}s")  # fmt: skip
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
