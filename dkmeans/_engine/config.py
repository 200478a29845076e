"""Tuning constants as ``dask.config`` keys under ``dkmeans.``.

Set them like any dask option, e.g. ``dask.config.set({"dkmeans.task-bytes": "256 MiB"})``
or ``DASK_DKMEANS__TASK_BYTES="256 MiB"`` in the environment.  None of them changes a
result: they trade tasks, memory and scheduler time.
"""

from __future__ import annotations

import dask
from dask.utils import parse_bytes

from .errors import ConfigError

DEFAULTS = {
    # chunks a pass groups into one task, up to this many bytes of data per task
    "task-bytes": "64 MiB",
    # fan-in of the fixed-order combine tree (also the grouping's unit: groups hold
    # split-every**m consecutive blocks, so the tree does not depend on the grouping)
    "split-every": 8,
    # target block size when an in-memory array is split into blocks
    "block-bytes": "32 MiB",
    # far rows kept per Lloyd pass for empty-cluster relocation
    "max-far": 256,
    # row tile of the float64 centred products (PCA, covariance)
    "tile-rows": 16384,
    # largest tree nodes a task keeping per-row state sends the client as an event (the
    # scheduler keeps a client's last 1000 events); larger are gathered; 0: none sent
    "push-bytes": "64 KiB",
}

dask.config.update_defaults({"dkmeans": DEFAULTS})


_MINIMUM = {"split-every": 2, "task-bytes": 1, "block-bytes": 1, "max-far": 0, "tile-rows": 1,
            "push-bytes": 0}  # fmt: skip


def get(name: str):
    """The value of ``dkmeans.<name>`` (sizes in bytes as ints), checked."""
    value = dask.config.get(f"dkmeans.{name}")
    try:
        sized = name.endswith("-bytes") and isinstance(value, str)
        out = parse_bytes(value) if sized else int(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"dask config dkmeans.{name}={value!r} is not valid: {err}") from err
    if out < _MINIMUM[name]:
        raise ConfigError(
            f"dask config dkmeans.{name}={value!r} is too small: use at least {_MINIMUM[name]}."
        )
    return out
