"""Start the Dask cluster a YAML file in ``cluster_configs/`` describes.

Each kind starts its cluster through the deployer's own API: dask's threaded
scheduler, ``distributed.LocalCluster``, ``distributed.Client`` on an existing
scheduler address (with TLS), ``dask_jobqueue.SLURMCluster`` / ``PBSCluster``,
``dask_kubernetes.operator.KubeCluster``.  Files are read with ``yaml.safe_load``
and unknown keys are errors.  Any kind may carry ``dask_config``, dask settings set
while the cluster runs: in this process (the client, and a LocalCluster's scheduler),
and in a LocalCluster's workers, which inherit them when they start.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from .._engine.errors import ClusterConfigError, NotFoundError

__all__ = ["ClusterConfigError", "job_script", "load_cluster_config", "open_cluster"]

logger = logging.getLogger(__name__)

# kind -> keys allowed beside "kind" (jobqueue and kubernetes also take their
# deployer's own keyword arguments under "cluster", checked against its signature)
KEYS = {
    "threaded": {"num_workers"},
    "local": {"n_workers", "threads_per_worker", "processes", "memory_limit", "dashboard_address"},
    "address": {"address", "tls", "timeout"},
    "slurm": {"cluster", "jobs", "adapt", "wait_for_workers"},
    "pbs": {"cluster", "jobs", "adapt", "wait_for_workers"},
    "kubernetes": {"cluster", "n_workers", "adapt", "wait_for_workers"},
}
COMMON_KEYS = {"dask_config"}
TLS_KEYS = {"ca_file", "cert", "key", "require_encryption"}
ADAPT_KEYS = {"minimum", "maximum"}
_INSTALL = {"slurm": "dask-jobqueue", "pbs": "dask-jobqueue", "kubernetes": "dask-kubernetes"}


def _check_keys(where: str, given, allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ClusterConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}.")


def load_cluster_config(path: str | os.PathLike | dict) -> dict:
    """Read and check a cluster configuration (a YAML path, or the parsed mapping)."""
    if isinstance(path, dict):
        config, where = dict(path), "cluster config"
    else:
        p = Path(path)
        if not p.is_file():
            raise NotFoundError(f"No cluster config at {p}; see cluster_configs/*.yaml.")
        try:
            config = yaml.safe_load(p.read_text())
        except yaml.YAMLError as err:
            raise ClusterConfigError(f"{p} is not valid YAML: {err}") from err
        where = str(p)
    if not isinstance(config, dict) or "kind" not in config:
        raise ClusterConfigError(f"{where}: expected a mapping with a 'kind' key.")
    kind = config["kind"]
    if kind not in KEYS:
        raise ClusterConfigError(f"{where}: kind {kind!r} is not one of {sorted(KEYS)}.")
    _check_keys(where, set(config) - {"kind"}, KEYS[kind] | COMMON_KEYS)
    settings = config.get("dask_config")
    if settings is not None and (
        not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings)
    ):
        raise ClusterConfigError(
            f"{where}: dask_config must map dask setting names to values, e.g. "
            "dask_config: {distributed.worker.profile.interval: 100ms}."
        )
    if isinstance(config.get("tls"), dict):
        _check_keys(f"{where} (tls)", config["tls"], TLS_KEYS)
    if isinstance(config.get("adapt"), dict):
        _check_keys(f"{where} (adapt)", config["adapt"], ADAPT_KEYS)
    if kind in ("slurm", "pbs", "kubernetes"):
        cls = _deployer(kind, where)
        _check_keys(f"{where} (cluster)", config.get("cluster") or {}, _accepted(cls))
    if kind == "address" and not config.get("address"):
        raise ClusterConfigError(f"{where}: kind 'address' needs address: tcp://host:8786.")
    return config


def _deployer(kind: str, where: str):
    try:
        if kind == "slurm":
            from dask_jobqueue import SLURMCluster as cls
        elif kind == "pbs":
            from dask_jobqueue import PBSCluster as cls
        else:
            from dask_kubernetes.operator import KubeCluster as cls
    except ImportError as err:
        raise ClusterConfigError(
            f"{where}: kind {kind!r} needs {_INSTALL[kind]}: pip install {_INSTALL[kind]}"
        ) from err
    return cls


def _accepted(cls) -> set[str]:
    """Keyword arguments a deployer accepts: its own, and for jobqueue its job class's."""
    names = set()
    classes = [*cls.__mro__, *getattr(cls, "job_cls", object).__mro__]
    for c in classes:
        init = c.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
    return names


def _scale(cluster, config: dict) -> None:
    adapt = config.get("adapt")
    if adapt:
        cluster.adapt(**adapt)
    elif config.get("jobs") is not None:
        cluster.scale(jobs=int(config["jobs"]))
    elif config.get("n_workers") is not None:
        cluster.scale(int(config["n_workers"]))


def _security(tls: dict | None):
    if not tls:
        return None
    from distributed.security import Security

    return Security(
        tls_ca_file=tls.get("ca_file"), tls_client_cert=tls.get("cert"),
        tls_client_key=tls.get("key"), require_encryption=bool(tls.get("require_encryption")),
    )  # fmt: skip


@contextlib.contextmanager
def open_cluster(path: str | os.PathLike | dict | None) -> Iterator[object]:
    """Start the cluster a config describes; yields its ``distributed.Client`` (None for
    the threaded scheduler), and shuts down what it started on exit.

    Parameters
    ----------
    path : str, path-like, dict or None
        A YAML file from ``cluster_configs/`` (or its parsed mapping); None means
        the threaded scheduler.

    Examples
    --------
    >>> from dkmeans import open_cluster
    >>> with open_cluster({"kind": "threaded", "num_workers": 2}) as client:
    ...     print(client)
    None
    """
    import dask

    config = load_cluster_config(path) if path is not None else {"kind": "threaded"}
    with dask.config.set(config.get("dask_config") or {}):
        yield from _open(config)


def _open(config: dict) -> Iterator[object]:
    import dask

    kind = config["kind"]
    if kind == "threaded":
        with dask.config.set(scheduler="threads", num_workers=config.get("num_workers")):
            yield None
        return
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if kind == "local":
            options = {k: v for k, v in config.items() if k not in ("kind", *COMMON_KEYS)}
            options.setdefault("dashboard_address", ":0")
            cluster = stack.enter_context(LocalCluster(**options))
            client = stack.enter_context(Client(cluster))
        elif kind == "address":
            client = stack.enter_context(
                Client(
                    config["address"],
                    security=_security(config.get("tls")),
                    timeout=config.get("timeout", "30s"),
                )
            )
        else:
            cls = _deployer(kind, "cluster config")
            cluster = stack.enter_context(cls(**(config.get("cluster") or {})))
            _scale(cluster, config)
            client = stack.enter_context(Client(cluster))
            if config.get("wait_for_workers"):
                client.wait_for_workers(int(config["wait_for_workers"]))
        logger.info("cluster %s: dashboard %s", kind, client.dashboard_link)
        yield client


def job_script(path: str | os.PathLike | dict) -> str:
    """The batch script a SLURM or PBS config would submit (nothing is submitted)."""
    config = load_cluster_config(path)
    if config["kind"] not in ("slurm", "pbs"):
        raise ClusterConfigError(f"kind {config['kind']!r} has no job script; use slurm or pbs.")
    cls = _deployer(config["kind"], "cluster config")
    with cls(**(config.get("cluster") or {})) as cluster:
        return cluster.job_script()
