"""Dask only: map the chunk reductions over row blocks and tree-reduce them.

``RowBlocks`` holds a 2-D dask array (features in one chunk) as a list of per-block
delayed objects with their weights.  Each ``*_pass`` method is ONE pass over the
data and ONE ``dask.compute`` returning small arrays; passes that keep per-row
state (k-means|| costs, final labels) persist it beside the blocks.  Task names
read ``dkmeans-<stage>-<n>`` on the dashboard.  Combining runs in a fixed tree
over block order, and random draws use per-block seeds from a SeedSequence, so
results do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from functools import partial

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed, delayed

from . import _backend as B
from . import _kernels as K
from . import _reductions as R
from ._logging import progress_stream

logger = logging.getLogger("dkmeans")

SPLIT_EVERY = 8


def active_client():
    """The distributed Client dask would use now, or None for local schedulers."""
    if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def memory_budget(client, meta=None) -> int:
    """Bytes we may use to keep data in memory: half the cluster's (or this machine's)
    RAM, and at most half the GPU's free memory when the blocks (``meta``) live there."""
    budget = _host_budget(client)
    device = B.device_free_bytes(meta)
    return budget if device is None else min(budget, device // 2)


def _host_budget(client) -> int:
    if client is not None:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        total = sum(int(w.get("memory_limit") or 0) for w in workers)
        if total:
            return total // 2
    import psutil

    return psutil.virtual_memory().available // 2


def block_seed(entropy: int, stage: int, block: int) -> np.random.SeedSequence:
    """Seed of one block's draws in one stage: a function of the fit's entropy only."""
    return np.random.SeedSequence([entropy, stage, block])


def run_with_progress(objs, client, *, persist: bool):
    """``dask.compute`` (or ``dask.persist``) of ``objs``, with a progress bar when
    ``_logging.progress`` is on: dask's ProgressBar on local schedulers, distributed's
    text progress bar on a cluster."""
    stream = progress_stream()
    run = dask.persist if persist else dask.compute
    if stream is None:
        return run(*objs)
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=stream, minimum=0.5):
            return run(*objs)
    from distributed import progress, wait

    futures = client.persist(list(objs)) if persist else client.compute(list(objs))
    with contextlib.redirect_stdout(stream):
        progress(futures, notebook=False)
    if persist:
        wait(futures)
        return futures
    return client.gather(futures)


def tree_reduce(parts: Sequence, combine: Callable, name: str, split_every: int = SPLIT_EVERY):
    """Combine delayed partials in a fixed tree: groups of ``split_every`` in block order."""
    level = 0
    parts = list(parts)
    while len(parts) > 1:
        parts = [
            delayed(combine, pure=True)(
                parts[i : i + split_every], dask_key_name=(f"{name}-combine{level}", j)
            )
            for j, i in enumerate(range(0, len(parts), split_every))
        ]
        level += 1
    if isinstance(parts[0], Delayed):
        return parts[0]
    return delayed(combine, pure=True)(parts, dask_key_name=(f"{name}-combine", 0))


def map_rows(fn, X: da.Array, *row_arrays: da.Array, dtype, name: str) -> da.Array:
    """``fn(block, *row_blocks)`` -> one NumPy value per row, as a lazy 1-D dask array.

    ``X`` has one chunk along features and ``row_arrays`` are chunked like its rows,
    so each task gets its block as it is: no concatenation through NumPy, which a
    CuPy block refuses.
    """

    def apply(blocks, *rest):
        return fn(blocks[0], *rest)

    pairs = [X, "ij"] + [p for a in row_arrays for p in (a, "i")]
    token = tokenize(fn, X.name, *(a.name for a in row_arrays))
    return da.blockwise(
        apply, "i", *pairs, dtype=dtype, meta=np.empty(0, dtype), concatenate=False,
        name=f"{name}-{token}",
    )  # fmt: skip


class RowBlocks:
    """A (n_samples, n_features) dask array seen as row blocks, with weights.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), one chunk along features.
    sample_weight : dask.array.Array of shape (n_samples,) chunked like X's rows, or None.
    client : distributed.Client or None
    """

    def __init__(self, X: da.Array, sample_weight: da.Array | None = None, client=None):
        if X.numblocks[1] != 1:
            raise ValueError("RowBlocks needs X in one chunk along features")
        self.X = X
        self.sample_weight = sample_weight
        self.client = client
        self.blocks = list(X.to_delayed(optimize_graph=False).ravel())
        self.weights = (
            [None] * len(self.blocks)
            if sample_weight is None
            else list(sample_weight.to_delayed(optimize_graph=False).ravel())
        )
        self.offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        self.n_passes = 0
        self._token = tokenize(X.name, None if sample_weight is None else sample_weight.name)

    @property
    def n_samples(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def dtype(self):
        return self.X.dtype

    # ------------------------------------------------------------------ plumbing
    def broadcast(self, value, name: str):
        """Ship a small object once: scattered to all workers, or one graph key."""
        if self.client is not None:
            return self.client.scatter(value, broadcast=True, hash=False)
        return delayed(value, name=f"{name}-{tokenize(value)}", traverse=False)

    def _key(self, stage: str, *args) -> str:
        return f"dkmeans-{stage}-{tokenize(self._token, stage, *args)[:8]}"

    def _map(self, fn, name, *shared, blocks=None, per_block=None):
        blocks = self.blocks if blocks is None else blocks
        return [
            delayed(fn, pure=True)(
                blk, w, *shared, *(per_block(i) if per_block else ()), dask_key_name=(name, i)
            )
            for i, (blk, w) in enumerate(zip(blocks, self.weights, strict=True))
        ]

    def _compute(self, *objs):
        self.n_passes += 1
        return run_with_progress(objs, self.client, persist=False)

    def _persist(self, tasks):
        self.n_passes += 1
        return list(run_with_progress(tasks, self.client, persist=True))

    def aligned(self, values: da.Array) -> list:
        """Per-block delayed pieces of a per-row dask array, chunked like X's rows."""
        if values.chunks[0] != self.X.chunks[0]:
            values = values.rechunk({0: self.X.chunks[0]})
        return list(values.to_delayed(optimize_graph=False).ravel())

    def reduce(self, chunk, combine, name: str, *shared, per_block=None, blocks=None):
        """One pass: ``chunk(block, weight, *shared, *per_block(i))``, tree-combined.

        ``shared`` objects are broadcast once; returns the computed root.
        """
        shipped = [self.broadcast(v, f"{name}-shared") for v in shared]
        tasks = self._map(
            chunk, self._key(name, *shared), *shipped, per_block=per_block, blocks=blocks
        )
        return self._compute(tree_reduce(tasks, combine, f"{name}-reduce"))[0]

    def block_pairs(self, pair, combine, finalize, name: str, *shared, per_block):
        """For every block i: ``finalize(combine([pair(X_i, X_j, ...) for all j]), ...)``.

        ``pair(x_i, x_j, *shared, *per_block(j), offset)`` gets the global row offset of
        ``x_i`` within ``x_j`` (None unless i == j); ``finalize(sum, *per_block(i))``.
        O(n_blocks²) tasks: each block is read n_blocks times unless persisted.
        Returns one delayed result per block.
        """
        shipped = [self.broadcast(v, f"{name}-shared") for v in shared]
        key = self._key(name, *shared)
        out = []
        for i, xi in enumerate(self.blocks):
            parts = [
                delayed(pair, pure=True)(
                    xi,
                    xj,
                    *shipped,
                    *per_block(j),
                    0 if i == j else None,
                    dask_key_name=(f"{key}-pair", i, j),
                )
                for j, xj in enumerate(self.blocks)
            ]
            total = tree_reduce(parts, combine, f"{key}-{i}-reduce")
            out.append(delayed(finalize, pure=True)(total, *per_block(i), dask_key_name=(key, i)))
        self.n_passes += self.n_blocks
        return out

    # ------------------------------------------------------------------ single rows
    def draw_row(self, rng: np.random.Generator) -> int:
        """A row index drawn uniformly, or with probability ∝ sample_weight."""
        if self.sample_weight is None:
            return int(rng.integers(self.n_samples))
        sums = np.array(dask.compute(*[delayed(_total)(w) for w in self.weights]))
        b = int(rng.choice(sums.shape[0], p=sums / sums.sum()))
        w = np.asarray(B.to_host(self.weights[b].compute()), dtype=np.float64)
        return int(self.offsets[b] + rng.choice(w.shape[0], p=w / w.sum()))

    def fetch_rows(self, index) -> np.ndarray:
        """Rows by global index, as NumPy (reads only the blocks that hold them)."""
        index = np.asarray(index, dtype=np.int64)
        block = np.searchsorted(self.offsets, index, side="right") - 1
        held = np.unique(block)
        pieces = dask.compute(
            *[
                delayed(K.take_rows)(self.blocks[b], index[block == b] - self.offsets[b])
                for b in held
            ]
        )
        out = np.empty((index.shape[0], self.X.shape[1]), dtype=self.dtype)
        for b, rows in zip(held, pieces, strict=True):
            out[block == b] = rows
        return out

    # ------------------------------------------------------------------ passes
    def moments_pass(self, name: str) -> R.Moments:
        """Weighted column moments and the non-finite count (one pass)."""
        tasks = self._map(R.weighted_moments_chunk, self._key(name))
        return self._compute(tree_reduce(tasks, R.combine_moments, f"{name}-reduce"))[0]

    def lloyd_pass(self, center_sets, shift, n_far: int, *, with_moments: bool, name: str):
        """One Lloyd step for all centre sets: (list of LloydPartial, Moments | None)."""
        shared = self.broadcast((center_sets, shift), f"{name}-centers")
        tasks = self._map(_lloyd_chunk_packed, self._key(name, shift), shared, n_far, with_moments)
        combine = partial(R.combine_lloyd, n_far=n_far)
        (result,) = self._compute(tree_reduce(tasks, combine, f"{name}-reduce"))
        return result

    def seeding_pass(self, requests, *, with_moments: bool, name: str):
        """One pass serving several seeders: each request is ``(job, state, entropy, stage)``.

        ``job`` is an ``R.SeedingJob``; ``state`` the per-block list an earlier pass
        returned for that seeder (None at first); block ``i`` draws its keys from
        ``block_seed(entropy, stage, i)``.  Returns ``(results, states, Moments | None)``
        with one combined result and one new per-block state list per request.  The
        data is read only if some job needs it (a pass is then counted).
        """
        jobs = tuple(r[0] for r in requests)
        reads = with_moments or any(job.reads_data for job in jobs)
        shared = self.broadcast(jobs, f"{name}-jobs")

        def per_block(i):
            states = [None if r[1] is None else r[1][i] for r in requests]
            seeds = [block_seed(r[2], r[3], i) for r in requests]
            return states, seeds, int(self.offsets[i])

        tasks = self._map(
            partial(R.seeding_jobs_chunk, with_moments=with_moments),
            self._key(name, jobs, [r[2:] for r in requests]), shared,
            blocks=None if reads else [None] * self.n_blocks, per_block=per_block,
        )  # fmt: skip
        persisted = self._persist(tasks) if reads else list(dask.persist(*tasks))
        combine = partial(R.combine_seeding_jobs, jobs=jobs)
        results, mom = dask.compute(
            tree_reduce([p[0] for p in persisted], combine, f"{name}-reduce")
        )[0]
        states = [[p[1 + j] for p in persisted] for j in range(len(requests))]
        return list(results), states, mom

    def cost_pass(self, centers_list, shift, name) -> np.ndarray:
        """Exact costs of several centre sets (one pass)."""
        sets = [K.prepare_centers(c, shift, self.dtype) for c in centers_list]
        shared = self.broadcast((centers_list, sets, shift), f"{name}-centers")
        tasks = self._map(_cost_chunk_packed, self._key(name, shift), shared)
        return self._compute(tree_reduce(tasks, R.combine_sum, f"{name}-reduce"))[0]

    def label_pass(self, centers, shift, name, *, keep: str):
        """Final labels and exact cost.

        ``keep="persist"`` returns labels as a dask array held in memory (workers' or
        this process's), so touching them never re-reads the data; ``keep="compute"``
        returns a NumPy array.
        """
        cs = K.prepare_centers(centers, shift, self.dtype)
        shared = self.broadcast((centers, cs, shift), f"{name}-centers")
        key = self._key(name, shift, tokenize(centers))
        tasks = self._map(_label_chunk_packed, key, shared)
        if keep == "compute":
            out = self._compute(*tasks)
            labels = np.concatenate([o[0] for o in out]) if out else np.empty(0, np.int32)
            return labels, R.combine_assignment([o[1] for o in out])
        persisted = self._persist(tasks)
        assignment = dask.compute(
            tree_reduce([p[1] for p in persisted], R.combine_assignment, f"{name}-reduce")
        )[0]
        pieces = [
            da.from_delayed(p[0], shape=(int(n),), dtype=np.int32, name=f"{key}-labels-{i}")
            for i, (p, n) in enumerate(zip(persisted, self.X.chunks[0], strict=True))
        ]
        return da.concatenate(pieces), assignment


def _total(w) -> float:
    xp = B.namespace(w)
    return float(xp.sum(xp.astype(w, xp.float64)))


# Packed signatures: shared small arguments travel as one broadcast object.
def _lloyd_chunk_packed(X, w, shared, n_far, with_moments):
    center_sets, shift = shared
    return R.lloyd_chunk(X, w, center_sets, shift, n_far, with_moments)


def _cost_chunk_packed(X, w, shared):
    centers_list, sets, shift = shared
    return R.cost_chunk(X, w, centers_list, sets, shift)


def _label_chunk_packed(X, w, shared):
    centers, cs, shift = shared
    return R.label_chunk(X, w, centers, cs, shift)


@contextlib.contextmanager
def single_threaded_blas():
    """Let dask own the parallelism: BLAS inside chunk kernels runs on one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
