"""Fit checkpoints: the state after seeding and after every Lloyd iteration, on disk.

One ``.npz`` file per checkpoint directory, replaced atomically (written to a
temporary name, then ``os.replace``): a fit killed at any moment leaves the last
complete state.  Resuming restores the runs (centres, iteration, convergence,
history) and the data's column moments, so the remaining iterations compute exactly
what the uninterrupted fit would have.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import reductions as R
from .errors import StoreError
from .lloyd import Run

FILE = "dkmeans-checkpoint.npz"
VERSION = 1


class Checkpoint:
    """The checkpoint of one fit in ``path``; ``key`` identifies the fit (data shape,
    dtype and the parameters that shape the result) so another fit cannot resume it."""

    def __init__(self, path: str | os.PathLike, key: dict):
        self.dir = Path(path)
        self.key = json.loads(json.dumps(key, default=str))
        self.file = self.dir / FILE

    def save(self, stage: str, runs: list[Run], moments: R.Moments | None, **extra) -> None:
        """Atomically replace the checkpoint with this state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "version": VERSION,
            "key": self.key,
            "stage": stage,
            "runs": [
                {
                    "n_iter": r.n_iter,
                    "converged": r.converged,
                    "history": [list(map(float, h)) for h in r.history],
                }
                for r in runs
            ],
            "moments": None
            if moments is None
            else {
                "count": float(moments.count),
                "n_nonfinite": int(moments.n_nonfinite),
            },
            **extra,
        }
        arrays = {f"centers_{i}": r.centers for i, r in enumerate(runs)}
        if moments is not None:
            arrays |= {"mean": moments.mean, "m2": moments.m2}
        tmp = self.dir / f".{FILE}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)

    def load(self) -> dict | None:
        """The saved state, or None if there is none; raises if it is another fit's."""
        if not self.file.exists():
            return None
        with np.load(self.file, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != VERSION:
                raise StoreError(
                    f"The checkpoint in {self.dir} has version {meta.get('version')}; this "
                    f"dkmeans writes version {VERSION}. Remove it to start afresh."
                )
            if meta["key"] != self.key:
                diff = sorted(
                    k
                    for k in set(meta["key"]) | set(self.key)
                    if meta["key"].get(k) != self.key.get(k)
                )
                raise StoreError(
                    f"The checkpoint in {self.dir} belongs to another fit (differs in {diff}); "
                    "remove it, or point checkpoint= at another directory."
                )
            runs = [
                Run(
                    z[f"centers_{i}"].copy(),
                    r["n_iter"],
                    r["converged"],
                    [tuple(h) for h in r["history"]],
                )
                for i, r in enumerate(meta["runs"])
            ]
            moments = None
            if meta["moments"] is not None:
                m = meta["moments"]
                moments = R.Moments(m["count"], z["mean"].copy(), z["m2"].copy(), m["n_nonfinite"])
        return {"stage": meta["stage"], "runs": runs, "moments": moments, "meta": meta}

    def observer(self, n_seeding_passes: int):
        """``on_iteration`` for Lloyd: save the state after every iteration."""

        def save(runs, moments):
            self.save("lloyd", runs, moments, n_seeding_passes=n_seeding_passes)

        return save
