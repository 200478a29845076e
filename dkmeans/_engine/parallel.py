"""Dask only: map the chunk reductions over row blocks and tree-reduce them.

``RowBlocks`` holds a 2-D dask array (features in one chunk) and its weights as
references to their blocks.  Each ``*_pass`` method is ONE pass over the data and
ONE low-level graph (``graph``) handed to the scheduler, returning small arrays.
A task covers several consecutive blocks (``dkmeans.task-bytes``), or, for blocks a
cluster holds, the blocks one worker thread's worker holds; partials combine in a
fixed tree over block order (``tree_nodes``: a group folds the whole subtrees among
its blocks), and random draws use per-block seeds from a SeedSequence, so results
depend neither on the grouping nor on the number of workers.  Per-row state a later
pass needs (k-means|| costs, pruned Lloyd's bounds, final labels) stays beside the
blocks, kept by the same graph run that makes it.  Task names read
``dkmeans-<stage>-<token>``; the dashboard groups them by the stage's letter-only
words (``dkmeans-lloyd``, ``dkmeans-kmeans-parallel-round``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import sys
import uuid
from collections.abc import Callable
from functools import cached_property, partial
from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from . import backend as B
from . import config
from . import graph as G
from . import kernels as K
from . import reductions as R
from . import summary as SM
from .log import cluster_bar, local_bar, progress_stream
from .store import kept_reads

logger = logging.getLogger(__name__)


_STAGE_GATHER = 12  # block seeds of the gathering pass's sample
_NODE_OVERHEAD = 512  # pickled bytes of a tree node beyond its arrays' data


def active_client():
    """The distributed Client dask would use now, or None for local schedulers."""
    if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None
    if "distributed" not in sys.modules:  # no Client can exist; importing it costs ~0.4 s
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


def run_with_progress(objs, client, label: str = "labels"):
    """``dask.compute`` of dask collections ``objs``, with a progress bar when
    ``log.progress`` is on: dask's ProgressBar on local schedulers, distributed's
    text progress bar on a cluster.  (A pass's own graph runs through
    ``graph.Builder.run``.)"""
    stream = progress_stream()
    if stream is None:
        return dask.compute(*objs)
    if client is None:
        with local_bar(label, stream):
            return dask.compute(*objs)
    futures = client.compute(list(objs))
    cluster_bar(futures, label, stream)
    return client.gather(futures)


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


def map_features(fn, X: da.Array, n_out: int, *params, dtype, name: str) -> da.Array:
    """``fn(block, *params)`` -> ``(rows, n_out)`` per block, as a lazy dask array chunked
    like X's rows (the result stays in the block's array library); ``name`` is the
    output's name (a prefix and a token of what determines it)."""
    return X.map_blocks(fn, *params, dtype=dtype, chunks=(X.chunks[0], (n_out,)), name=name)


def keep_in_memory(X: da.Array, client) -> da.Array:
    """``X.persist()`` on the cluster, or on the local scheduler (``graph.local_get``:
    without importing distributed).  NumPy blocks are kept in ``backend.host_empty``
    memory: a store's chunks decoded into it (``store.kept_reads``), or a copy made as
    each block is read (see there)."""
    kept = kept_reads(X)
    if kept is not None:
        X = kept
    elif B.is_host(X._meta):
        X = X.map_blocks(B.host_copy, dtype=X.dtype, name=f"dkmeans-keep-{tokenize(X.name)}")
    return X.persist() if client is not None else X.persist(scheduler=G.local_get())


def persist_from_here(X: da.Array) -> da.Array:
    """Persist an array held by this process (NumPy blocks in its graph) on the cluster.

    The data travels once, inside the graph, so a lost worker's blocks can be rebuilt
    from it (scattered futures would be lost with the worker); dask's large-graph
    warning is expected here and silenced.
    """
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "64GiB"}):
        return X.persist()


class BlockRef(NamedTuple):
    """Block ``i`` of a row-aligned array (``RowBlocks.aligned``), for ``per_block``:
    the task gets the block itself."""

    ref: G.TaskRef
    blocks: G.ArrayBlocks  # holds the array, so blocks held as futures stay alive


def tree_depth(n: int, split_every: int) -> int:
    """Levels of the fixed combine tree over ``n`` leaves (0 for a single leaf)."""
    depth = 0
    while n > 1:
        n = -(-n // split_every)
        depth += 1
    return depth


def group_size(n_blocks: int, block_bytes: float, threads: int) -> int:
    """Blocks per task: the largest power of ``split-every`` whose blocks fit in
    ``dkmeans.task-bytes`` while leaving at least two tasks per thread.

    A power of the tree's fan-in keeps each group a whole subtree of the fixed
    combine tree, so the grouping never changes a result.
    """
    split, target = config.get("split-every"), config.get("task-bytes")
    size = 1
    while size * split * block_bytes <= target and -(-n_blocks // (size * split)) >= 2 * threads:
        size *= split
    return size


def worker_groups(refs: list, client, aligned: list | None = None):
    """Groups of the blocks a cluster holds (``refs``, futures): per worker, its blocks
    in order cut into one group per worker thread; None unless every block is held.

    Returns ``(groups, refs, aligned)``: blocks a worker holds beyond its share of the
    threads are first copied to workers under theirs (``fair_moves``), and ``refs``
    (and the row-aligned futures ``aligned``, a sample weight's) then name the copies.
    A worker's group is as many blocks as another's, so a pass does not wait on the
    worker that got one more from ``persist`` (9 blocks against 7 on W1: 12% longer).

    Who holds what is read once, when the blocks are ready (a persist still running
    is waited for: the first pass would wait as long): a block that moves later only
    travels to its group's worker, and every result stays the same.
    """
    if client is None or getattr(client, "asynchronous", False):
        return None
    if not refs or not all(G.is_future(r) for r in refs):
        return None
    from distributed import wait

    wait(refs)
    threads = client.nthreads()
    where, shared = _holders(client.who_has(refs), refs, threads)
    moves = fair_moves(where, threads)
    # a block several workers hold is copied where its group runs: a copy that came
    # from another worker lies unaligned in its message's buffer (``_own_copy``)
    moves |= {i: where[i] for i in shared if i not in moves}
    unaligned = {
        w: set(keys) for w, keys in client.run(_unaligned_keys, [r.key for r in refs]).items()
    }
    moves |= {i: where[i] for i, r in enumerate(refs)
              if i not in moves and r.key in unaligned.get(where[i], ())}  # fmt: skip
    if moves:
        refs = _copy_to(client, refs, moves, "dkmeans-balance-blocks")
        if aligned is not None and all(G.is_future(r) for r in aligned):
            aligned = _copy_to(client, aligned, moves, "dkmeans-balance-weights")
        holders = client.who_has([refs[i] for i in moves])  # where the copies are
        for i in moves:
            where[i] = (holders.get(refs[i].key) or (None,))[0]
    by_worker: dict = {}
    for i, worker in enumerate(where):
        by_worker.setdefault(worker, []).append(i)
    groups = []
    for worker, blocks in by_worker.items():
        n = max(1, min(len(blocks), threads.get(worker, 1))) if worker is not None else len(blocks)
        groups.extend(tuple(int(i) for i in part) for part in np.array_split(blocks, n))
    return sorted(groups), refs, aligned


def _unaligned_keys(keys, dask_worker=None) -> list:
    """Of ``keys``, those this worker holds in memory as arrays not aligned for their
    dtype: replicas received from another worker (``_own_copy``); spilled ones are
    not read back to check."""
    data = dask_worker.data
    fast = getattr(data, "fast", data)
    out = []
    for key in keys:
        value = fast.get(key) if key in fast else None
        flags = getattr(value, "flags", None)
        if flags is not None and not getattr(flags, "aligned", True):
            out.append(key)
    return out


def _holders(who_has: dict, refs: list, threads: dict) -> tuple[list, list]:
    """One holder per block (of several, the one holding fewest blocks so far) and the
    blocks held more than once."""
    where, shared, count = [], [], dict.fromkeys(threads, 0)
    for i, ref in enumerate(refs):
        mine = [w for w in who_has.get(ref.key) or () if w in count] or [None]
        if len(mine) > 1:
            shared.append(i)
            mine = [min(mine, key=lambda w: (count[w] / threads[w], w))]
        where.append(mine[0])
        if mine[0] is not None:
            count[mine[0]] += 1
    return where, shared


def fair_moves(where: list, threads: dict) -> dict[int, str]:
    """Blocks to move so each worker holds its share of them by threads: ``{block: to}``.

    ``where[i]``: the worker holding block ``i`` (None: unknown, never moved).  Shares
    are whole blocks (largest remainders, ties to the worker holding more); a worker
    over its share gives its last blocks to workers under theirs, so no worker ends
    with more blocks than it had or than its share.
    """
    workers = sorted(threads)
    n, total = sum(x in threads for x in where), sum(threads.values())
    if n == 0 or total == 0 or len(workers) < 2:
        return {}
    held = {w: [i for i, x in enumerate(where) if x == w] for w in workers}
    exact = {w: n * threads[w] / total for w in workers}
    share = {w: int(exact[w]) for w in workers}
    spare = n - sum(share.values())
    for w in sorted(workers, key=lambda w: (-(exact[w] - share[w]), -len(held[w]), w))[:spare]:
        share[w] += 1
    givers = [i for w in workers for i in held[w][share[w] :]]
    takers = [w for w in workers for _ in range(share[w] - len(held[w]))]
    return dict(zip(givers, takers, strict=False))


def _copy_to(client, refs: list, moves: dict, name: str) -> list:
    """``refs`` with the blocks ``moves`` names replaced by copies made on their workers.

    The restriction is loose, so a lost worker's copy is made again elsewhere (any
    copy is the same block); a loose task queued on a busy worker may be stolen by
    the worker that holds its input, so each round gives a worker one copy to make.
    """
    from distributed import wait

    out, rounds = list(refs), {}
    for i, worker in moves.items():
        rounds.setdefault(worker, []).append(i)
    for step in range(max(len(v) for v in rounds.values())):
        batch = [v[step] for v in rounds.values() if step < len(v)]
        for i in batch:
            out[i] = client.submit(_own_copy, refs[i], key=f"{name}-{uuid.uuid4().hex[:8]}-{i}",
                                   workers=[moves[i]], allow_other_workers=True)  # fmt: skip
        wait([out[i] for i in batch])
    return out


def combine_levels(parts: list, combine: Callable, levels: int, split_every: int):
    """``levels`` levels of the fixed tree: groups of ``split_every`` in order."""
    for _ in range(levels):
        parts = [combine(parts[i : i + split_every]) for i in range(0, len(parts), split_every)]
    if len(parts) != 1:  # the caller's level count does not match the leaves
        raise RuntimeError(f"combine tree left {len(parts)} partials")
    return parts[0]


def tree_nodes(nodes, combine: Callable, n: int, split_every: int) -> list:
    """Fold ``(level, index, value)`` nodes of the fixed tree over ``n`` leaves.

    Every node whose children are all present is made (``combine`` of the children
    in order), level by level; the nodes left are returned.  Nodes of a group of
    blocks anywhere in the order thus fold into the group's whole subtrees, and the
    nodes of all groups (a disjoint cover of the leaves) into ``[(depth, 0, root)]``:
    the same tree, so the same result, as ``combine_levels`` over all leaves.
    """
    depth = tree_depth(n, split_every)
    levels = [{} for _ in range(depth + 1)]
    for level, i, value in nodes:
        levels[level][i] = value
    left, width = [], n
    for level in range(depth):
        here = levels[level]
        for parent, kids in itertools.groupby(sorted(here), key=lambda i: i // split_every):
            kids = list(kids)
            if len(kids) == min(split_every, width - parent * split_every):
                levels[level + 1][parent] = combine([here[i] for i in kids])
            else:
                left.extend((level, i, here[i]) for i in kids)
        width = -(-width // split_every)
    return left + [(depth, i, v) for i, v in levels[depth].items()]


def fold_scattered(parts: list, leaves: tuple, combine: Callable, n: int, split_every: int):
    """A group's block partials (blocks ``leaves``, ascending) as its whole subtrees."""
    return tree_nodes(zip(itertools.repeat(0), leaves, parts), combine, n, split_every)


def finish_tree(node_lists: list, combine: Callable, n: int, split_every: int):
    """The root of the fixed tree from every group's nodes (``fold_scattered``)."""
    nodes = _fold_node_lists(node_lists, combine, n, split_every)
    if len(nodes) != 1 or nodes[0][0] != tree_depth(n, split_every):
        raise RuntimeError(f"combine tree left {len(nodes)} partials")
    return nodes[0][2]


def _group_task(chunk, fold, keep, shared, blocks, weights, extras):
    """One task over a group of blocks: ``chunk`` on each, then ``fold`` their outputs
    (the group's subtree, or subtrees: ``RowBlocks._fold``).

    ``fold=None``: the list of chunk outputs.  ``keep``: ``chunk`` returns
    ``(partial, kept)`` and the task ``(folded, [kept per block])``.
    """
    parts, kept = [], []
    for i, x in enumerate(blocks):
        out = chunk(x, None if weights is None else weights[i], *shared, *extras[i])
        if keep:
            out, k = out
            kept.append(k)
        parts.append(out)
    if fold is None:
        return parts
    node = fold(parts)
    return (node, kept) if keep else node


def _seeding_group(fold, with_moments, jobs, blocks, weights, states, seeds, offsets):
    """k-means|| / k-means++ jobs over a group of blocks: ``(folded, new states)``,
    the new states one list per job (one entry per block), None where a job keeps none."""
    parts, new = [], [[] for _ in jobs]
    for i, x in enumerate(blocks):
        state = [None if s is None else s[i] for s in states]
        w = None if weights is None else weights[i]
        out = R.seeding_jobs_chunk(x, w, jobs, state, seeds[i], offsets[i], with_moments)
        parts.append(out[0])
        for j, s in enumerate(out[1:]):
            new[j].append(s)
    return fold(parts), new


def _pruned_group(fold, n_far, steps, blocks, weights, kept, slots):
    """Pruned Lloyd steps over a group of blocks: ``(folded, new states)``, the new
    states one list per run (one entry per block).  ``kept[j]`` is what this group's
    task returned in run j's last pass (None for a first step), whose states are run
    j's at ``slots[j]``."""
    states = [None if out is None else out[1][slot] for out, slot in zip(kept, slots,
                                                                          strict=True)]  # fmt: skip
    parts, new = [], [[] for _ in steps]
    for i, x in enumerate(blocks):
        state = [None if s is None else s[i] for s in states]
        w = None if weights is None else weights[i]
        out = R.pruned_lloyd_chunk(x, w, steps, state, n_far)
        parts.append(out[0])
        for j, s in enumerate(out[1:]):
            new[j].append(s)
    return fold(parts), new


def _item(value, i):
    return value[i]


def _item_zero(values):
    return values[0]


def _fold_node_lists(node_lists, combine, n, split_every):
    return tree_nodes(itertools.chain.from_iterable(node_lists), combine, n, split_every)


class Root(NamedTuple):
    """What a pass gathers (``keys``; ``pushed``: kept tasks whose first items the
    client receives, ``push``) and how this process makes the tree's root of it."""

    keys: list
    finish: Callable
    pushed: tuple | list = ()

    def run(self, builder: G.Builder, keep: list = ()) -> tuple:
        """Run the pass: ``(root value, handles of keep)``."""
        values, handles = builder.run(self.keys, keep, self.pushed)
        return self.finish(values), handles


def _own_copy(x):
    """A block in memory of its own: one received from another worker lies in its
    message's buffer, not aligned for its dtype (offset 27 bytes for float32: a pruned
    pass over such a block took 3x as long, 26 ms against 9 ms)."""
    return x.copy()


def _identity(x):
    return x


def _block_and_weight(x, w):
    return x, w


class RowBlocks:
    """A (n_samples, n_features) dask array seen as row blocks, with weights.

    Each ``*_pass`` is ONE data pass and ONE graph handed to the scheduler: a task per
    group of consecutive blocks (``group_size``), or per worker thread over the blocks
    its worker holds (``worker_groups``), on top of the input's own graph, then a
    fixed-order tree over the groups.  Building it costs a few objects per
    block, and the result does not depend on the grouping or on the workers.

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
        self._x = G.ArrayBlocks(X)
        self._w = None if sample_weight is None else G.ArrayBlocks(sample_weight)
        self.offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        self.n_passes = 0
        # keys only need to be unique (this object's passes, other fits, other clients
        # of the cluster); tokenizing every run's centres cost ~7 ms a pass
        self._token = uuid.uuid4().hex[:8]
        self._count = itertools.count()
        self.split_every = config.get("split-every")
        self._push_bytes = config.get("push-bytes")
        n = self.n_blocks
        self._depth = tree_depth(n, self.split_every)
        # blocks a cluster's workers hold: a task per worker thread over the blocks its
        # worker holds, wherever they lie in the order (``_fold``), so a pass is a few
        # tasks that move no block; blocks read by the tasks: consecutive groups
        held = None
        if self._x.cluster_held:
            held = worker_groups(self._x.refs, client, None if self._w is None else self._w.refs)
        self.scattered = held is not None
        if held is not None:
            self.groups, self._x.refs, w_refs = held
            if self._w is not None:
                self._w.refs = w_refs
            self._in_group = 0
        else:
            size = group_size(n, X.nbytes / max(n, 1), G.n_threads(client))
            if self._x.cluster_held:
                # blocks made on the workers from held inputs: one task per block runs
                # where its inputs live, where a group would gather them every pass
                size = 1
            self.groups = [tuple(range(a, min(a + size, n))) for a in range(0, n, size)]
            self._in_group = min(self._depth, round(math.log(size, self.split_every)))

    def keeps_row_state(self, bytes_per_row: int) -> bool:
        """Whether per-row state that passes keep beside the blocks (``bytes_per_row``
        a row, held twice while a pass runs) fits under a quarter of the memory budget."""
        budget = memory_budget(self.client, self.X._meta)
        return 2 * bytes_per_row * self.n_samples <= budget // 4

    @cached_property
    def _block_slots(self) -> list[tuple[int, int]]:
        """Per block, in block order: ``(its group, its place in the group)``."""
        slots = [None] * self.n_blocks
        for g, group in enumerate(self.groups):
            for j, i in enumerate(group):
                slots[i] = (g, j)
        return slots

    @property
    def n_samples(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_blocks(self) -> int:
        return len(self._x)

    @property
    def dtype(self):
        return self.X.dtype

    # ------------------------------------------------------------------ plumbing
    def _key(self, stage: str) -> str:
        """A task-name prefix unique to one pass: ``dkmeans-{stage}-...`` (what the
        dashboard shows is ``dkmeans-{stage}``)."""
        return f"dkmeans-{stage}-{self._token}-{next(self._count)}"

    def _builder(self, reads: bool = True, label: str = "dask") -> G.Builder:
        b = G.Builder(self.client, label)
        if reads:
            b.include(self._x.graph)
        if self._w is not None:
            b.include(self._w.graph)
        return b

    def _inputs(self, group: tuple, reads: bool):
        blocks = G.List(*(self._x.refs[i] for i in group)) if reads else [None] * len(group)
        weights = None if self._w is None else G.List(*(self._w.refs[i] for i in group))
        return blocks, weights

    def _fold(self, combine, group: tuple):
        """How a group task folds its blocks' partials: a consecutive group into its
        subtree (``_in_group`` levels); a worker's scattered blocks into the whole
        subtrees among them (``fold_scattered``), finished by ``_tree``'s root."""
        if self.scattered:
            return partial(fold_scattered, leaves=group, combine=combine, n=self.n_blocks,
                           split_every=self.split_every)  # fmt: skip
        return partial(combine_levels, combine=combine, levels=self._in_group,
                       split_every=self.split_every)  # fmt: skip

    def _extras(self, builder: G.Builder, per_block, group: tuple) -> tuple[list, bool]:
        """``per_block(i)`` for the blocks of ``group``, ``aligned`` references resolved;
        and whether any was a reference."""
        if per_block is None:
            return [()] * len(group), False
        rows, refs = [], False
        for i in group:
            items = []
            for v in per_block(i):
                if isinstance(v, BlockRef):
                    builder.include(v.blocks.graph)
                    v, refs = v.ref, True
                items.append(v)
            rows.append(G.nested(items))
        return rows, refs

    def _tree(self, builder: G.Builder, key: str, nodes: list, combine, *, kept: bool,
              node_bytes: int | None = None) -> Root:  # fmt: skip
        """The tree's levels above the groups, up to what this process gathers.

        ``kept``: the group tasks return ``(subtree, kept values)``; the tree takes the
        subtrees through small item tasks, so kept per-row values stay where they are,
        or, when this process gathers the groups' nodes themselves and a group's nodes
        (``node_bytes`` each, about) fit under ``dkmeans.push-bytes``, as each group
        task sends them (``push``).
        Scattered groups (a task per worker thread) are folded ``split_every`` at a time
        by tasks until at most ``split_every`` node lists are left, which this process
        gathers and finishes: a pass is then one scheduler round trip, with no task
        waiting on a transfer between workers.
        """
        finish = partial(finish_tree, combine=combine, n=self.n_blocks,
                         split_every=self.split_every)  # fmt: skip
        levels = max(tree_depth(len(nodes), self.split_every) - 1, 0)
        if kept and levels == 0 and self._pushes(node_bytes):
            # the client takes the groups' nodes as they end (``push``), where item
            # tasks and a gather cost two scheduler round trips after the last group
            for n in nodes:
                builder.push_first(n.key, self._push_bytes)
            return Root([], finish, [n.key for n in nodes])
        if kept:
            nodes = [builder.add((f"{key}-part", g), _item, n, 0) for g, n in enumerate(nodes)]
        if not self.scattered:
            (root,) = self._tree_levels(builder, key, nodes, combine,
                                        self._depth - self._in_group)  # fmt: skip
            return Root([root.key], _item_zero)
        fold = partial(_fold_node_lists, combine=combine, n=self.n_blocks,
                       split_every=self.split_every)  # fmt: skip
        nodes = self._tree_levels(builder, f"{key}-fold", nodes, fold, levels)
        return Root([r.key for r in nodes], finish)

    def _pushes(self, node_bytes: int | None) -> bool:
        """Whether a scattered group's nodes, ``node_bytes`` each, go in one event
        (scattered groups have a synchronous client: ``worker_groups``)."""
        if not self.scattered or node_bytes is None:
            return False
        return node_bytes * max(map(len, self.groups)) <= self._push_bytes

    def _shared(self, builder: G.Builder, key: str, value):
        """A value every group task gets: in each task's arguments when the groups are
        a task per worker thread (as many copies as a fetch would make, without a task
        and a transfer before the pass can start), else once in the graph."""
        return G.inline(value) if self.scattered else builder.data(key, value)

    def _tree_levels(self, builder: G.Builder, key: str, nodes: list, combine, levels: int):
        """``levels`` levels of combine tasks over ``nodes`` (groups of ``split_every``
        in order); returns the references of the top level."""
        for level in range(levels):
            nodes = [
                builder.add((f"{key}-combine{level}", j), combine,
                            G.List(*nodes[i : i + self.split_every]))
                for j, i in enumerate(range(0, len(nodes), self.split_every))
            ]  # fmt: skip
        return nodes

    def _groups_pass(self, chunk, combine, name, shared, per_block, *, reads=True, keep=False):
        """Group tasks of one pass: ``(builder, key, group refs)``."""
        key = self._key(name)
        b = self._builder(reads, name)
        shipped = self._shared(b, f"{key}-shared", tuple(shared))
        refs = []
        for g, group in enumerate(self.groups):
            blocks, weights = self._inputs(group, reads)
            extras, has_refs = self._extras(b, per_block, group)
            fold = None if combine is None else self._fold(combine, group)
            refs.append(b.add(
                (key, g), _group_task, chunk, fold, keep, shipped, blocks, weights,
                G.List(*extras) if has_refs else extras,
            ))  # fmt: skip
        if reads:
            self.n_passes += 1
        return b, key, refs

    def aligned(self, values: da.Array) -> list[BlockRef]:
        """Per-block references to a per-row dask array, chunked like X's rows."""
        if values.chunks[0] != self.X.chunks[0]:
            values = values.rechunk({0: self.X.chunks[0]})
        blocks = G.ArrayBlocks(values)
        return [BlockRef(ref, blocks) for ref in blocks.refs]

    def reduce(self, chunk, combine, name: str, *shared, per_block=None, reads: bool = True):
        """One pass: ``chunk(block, weight, *shared, *per_block(i))``, tree-combined.

        ``shared`` values travel once with the graph; ``per_block(i)`` may hold
        ``aligned`` references.  Returns the computed root.
        """
        b, key, refs = self._groups_pass(chunk, combine, name, shared, per_block, reads=reads)
        return self._tree(b, key, refs, combine, kept=False).run(b)[0]

    def map_blocks(self, chunk, name: str, *shared, per_block=None, reads: bool = True) -> list:
        """One pass: ``chunk(block, weight, *shared, *per_block(i))`` of every block, as a
        list in block order (small values only: they come back to the client)."""
        b, _, refs = self._groups_pass(chunk, None, name, shared, per_block, reads=reads)
        outs, _ = b.run([r.key for r in refs])
        return [outs[g][j] for g, j in self._block_slots]

    def _kept_array(self, handles: list, name: str, dtype) -> da.Array:
        """Per-block values a pass kept, as a dask array chunked like X's rows."""
        chunks = (self.X.chunks[0],)
        if self.client is not None:
            return da.Array({f.key: f for f in handles}, name, chunks, dtype=dtype)
        dsk = {(name, i): G.DataNode((name, i), h) for i, h in enumerate(handles)}
        return da.Array(dsk, name, chunks, dtype=dtype)

    def block_pairs(self, pair, combine, finalize, name: str, *shared, per_block) -> da.Array:
        """For every block i: ``finalize(combine([pair(X_i, X_j, ...) for all j]), ...)``.

        ``pair(x_i, x_j, *shared, *per_block(j), offset)`` gets the global row offset of
        ``x_i`` within ``x_j`` (None unless i == j); ``finalize(sum, *per_block(i))``.
        O(n_blocks²) tasks over one read of each block (held while the pairs that use it
        run); counted as n_blocks passes.
        Returns the finalized values as a lazy 1-D dask array chunked like X's rows.
        """
        key = self._key(name)
        b = self._builder()
        shipped = b.data(f"{key}-shared", tuple(shared))
        extras, _ = self._extras(b, per_block, range(self.n_blocks))
        # every pair uses two blocks: read each once (by key), not inside each pair task
        x = [b.keyed(ref) for ref in self._x.refs]
        for i in range(self.n_blocks):
            parts = [
                b.add((f"{key}-pair", i, j), _call_pair, pair, x[i], x[j], shipped, extras[j],
                      0 if i == j else None)
                for j in range(self.n_blocks)
            ]  # fmt: skip
            (total,) = self._tree_levels(b, f"{key}-{i}", parts, combine,
                                         tree_depth(len(parts), self.split_every))  # fmt: skip
            b.add((key, i), _call_finalize, finalize, total, extras[i])
        self.n_passes += self.n_blocks  # as many pairs as n_blocks passes would make
        return da.Array(b.graph(), key, (self.X.chunks[0],), dtype=np.float64)

    # ------------------------------------------------------------------ single rows
    def draw_row(self, rng: np.random.Generator) -> int:
        """A row index drawn uniformly, or with probability ∝ sample_weight.

        Both invert the cumulative weight at one uniform draw, so equal weights
        draw the row no weights draw."""
        u = rng.random()
        if self.sample_weight is None:
            return min(int(u * self.n_samples), self.n_samples - 1)
        sums = np.array(self.map_blocks(_weight_total, "weight-totals", reads=False))
        target = u * sums.sum()
        cum = np.cumsum(sums)
        b = min(int(np.searchsorted(cum, target, side="right")), sums.shape[0] - 1)
        builder = G.Builder(self.client)
        builder.include(self._w.needed([b]))
        ref = builder.add((self._key("weights"), b), _identity, self._w.refs[b])
        w = np.asarray(B.to_host(builder.run([ref.key])[0][0]), dtype=np.float64)
        within = target - (cum[b - 1] if b else 0.0)
        i = int(np.searchsorted(np.cumsum(w), within, side="right"))
        return int(self.offsets[b] + min(i, w.shape[0] - 1))

    def fetch_blocks(self, indices) -> list:
        """``(X_i, w_i)`` of the blocks ``indices``, computed (w_i None when unweighted)."""
        indices = [int(i) for i in indices]
        b = G.Builder(self.client)
        b.include(self._x.needed(indices))
        if self._w is not None:
            b.include(self._w.needed(indices))
        key = self._key("fetch")
        refs = [
            b.add((key, i), _block_and_weight, self._x.refs[i],
                  None if self._w is None else self._w.refs[i])
            for i in indices
        ]  # fmt: skip
        return b.run([r.key for r in refs])[0]

    def fetch_rows(self, index) -> np.ndarray:
        """Rows by global index, as NumPy (reads only the blocks that hold them)."""
        index = np.asarray(index, dtype=np.int64)
        block = np.searchsorted(self.offsets, index, side="right") - 1
        held = [int(h) for h in np.unique(block)]
        b = G.Builder(self.client)
        b.include(self._x.needed(held))
        key = self._key("fetch-rows")
        refs = [
            b.add((key, h), K.take_rows, self._x.refs[h], index[block == h] - self.offsets[h])
            for h in held
        ]
        pieces = b.run([r.key for r in refs])[0]
        out = np.empty((index.shape[0], self.X.shape[1]), dtype=self.dtype)
        for h, rows in zip(held, pieces, strict=True):
            out[block == h] = rows
        return out

    # ------------------------------------------------------------------ passes
    def moments_pass(self, name: str) -> R.Moments:
        """Weighted column moments and the non-finite count (one pass)."""
        return self.reduce(R.weighted_moments_chunk, R.combine_moments, name)

    def gather_pass(self, sample_size: int, entropy: int, *, with_gram: bool,
                    name: str = "gather") -> SM.Gathered:  # fmt: skip
        """Moments, the centred Gram if ``with_gram``, and a seeded sample of
        ``sample_size`` rows (weighted by sample_weight, if any), in one pass."""
        offsets = self.offsets
        keep = sample_size + 1  # the one past the sample gives the inclusion probabilities
        threshold = SM.key_threshold(keep, self.n_samples, self.sample_weight is not None)

        def per_block(i):
            seed = block_seed(entropy, _STAGE_GATHER, i)
            return ((seed, keep, int(offsets[i]), threshold),)

        def gather(label):
            key = f"{name}-{label}-{tokenize(entropy, keep, threshold)[:8]}"
            return self.reduce(SM.gather_chunk, partial(SM.combine_gathered, size=keep), key,
                               with_gram, per_block=per_block)  # fmt: skip

        out = gather("draw")
        if out.sample.index.shape[0] < min(keep, self.n_samples):
            # fewer rows than asked fell below the threshold (under 1e-9): the sample
            # would not be exact, so draw it again keeping every block's smallest keys
            logger.warning("row sample short of %d rows; drawing it again", sample_size)
            threshold = np.inf
            out = gather("redraw")
        return SM.finalize_gathered(out, sample_size)

    def lloyd_pass(self, center_sets, shift, n_far: int, *, with_moments: bool, name: str):
        """One Lloyd step for all centre sets: (list of LloydPartial, Moments | None)."""
        combine = partial(R.combine_lloyd, n_far=n_far)
        return self.reduce(R.lloyd_chunk, combine, name, center_sets, shift, n_far, with_moments)

    def pruned_lloyd_pass(self, steps, states, n_far: int, *, name: str):
        """One bound-pruned Lloyd step for several runs (``pruning``).

        ``steps``: one ``pruning.Step`` per run; ``states``: per run, the handles the
        run's last pruned pass returned (None with a first step, which computes every
        distance and makes the bounds).  The per-row bounds and per-block sums stay
        beside the blocks (on the workers, or in this process), as seeding's costs.
        Returns ``(partials, skipped, states)``: per run a LloydPartial (later passes
        carry no far rows), the rows that skipped their distances, the new handles.

        A handle is ``(the group task's output, the run's slot in it)``: the group
        tasks themselves are kept, not one extraction task per group and run (on a
        2-worker LocalCluster those were a third of a pruned pass's tasks).
        """
        key = self._key(name)
        b = self._builder(True, name)
        shipped = self._shared(b, f"{key}-steps", tuple(steps))
        combine = partial(R.combine_pruned_lloyd, n_far=n_far)
        slots = tuple(0 if s is None else s[0][1] for s in states)
        refs = []
        for g, group in enumerate(self.groups):
            blocks, weights = self._inputs(group, True)
            kept = [
                None if s is None else b.kept((f"{key}-state-in{j}", g), s[g][0])
                for j, s in enumerate(states)
            ]
            refs.append(b.add(
                (key, g), _pruned_group, self._fold(combine, group), n_far, shipped, blocks,
                weights, G.List(*kept), slots,
            ))  # fmt: skip
        k, d = steps[0].centers.shifted.shape
        node = len(steps) * (8 * (k * d + k) + _NODE_OVERHEAD)  # a LloydPartial a run
        root = self._tree(b, key, refs, combine, kept=True, node_bytes=node)
        root_value, handles = root.run(b, [r.key for r in refs])
        self.n_passes += 1
        parts, skipped = root_value
        new = [[(h, j) for h in handles] for j in range(len(steps))]
        return list(parts), list(skipped), new

    def seeding_pass(self, requests, *, with_moments: bool, name: str, label: str | None = None):
        """One pass serving several seeders: each request is ``(job, state, entropy, stage)``.

        ``job`` is an ``R.SeedingJob``; ``state`` the handle an earlier pass returned
        for that seeder (None at first); block ``i`` draws its keys from
        ``block_seed(entropy, stage, i)``.  Returns ``(results, states, Moments | None)``
        with one combined result and one new state per request (per-row costs that
        stay beside the blocks: on the workers, or in this process).  The data is read
        only if some job needs it (a pass is then counted).
        """
        jobs = tuple(r[0] for r in requests)
        reads = with_moments or any(job.reads_data for job in jobs)
        key = self._key(name)
        b = self._builder(reads, label or name)
        shipped = self._shared(b, f"{key}-jobs", jobs)
        combine = partial(R.combine_seeding_jobs, jobs=jobs)
        refs = []
        for g, group in enumerate(self.groups):
            blocks, weights = self._inputs(group, reads)
            states = [
                None if r[1] is None else b.kept((f"{key}-state-in{j}", g), r[1][g])
                for j, r in enumerate(requests)
            ]
            seeds = [[block_seed(r[2], r[3], i) for r in requests] for i in group]
            offsets = [int(self.offsets[i]) for i in group]
            refs.append(b.add(
                (key, g), _seeding_group, self._fold(combine, group), with_moments, shipped,
                blocks, weights, G.List(*states), seeds, offsets,
            ))  # fmt: skip
        kept = [j for j, job in enumerate(jobs) if job.kind == "round" and job.keep_state]
        state_keys = [
            b.add((f"{key}-state{j}", g), _kept, ref, j).key
            for j in kept for g, ref in enumerate(refs)
        ]  # fmt: skip
        root = self._tree(b, key, refs, combine, kept=True)
        root_value, handles = root.run(b, state_keys)
        if reads:
            self.n_passes += 1
        results, mom = root_value
        states = [None] * len(requests)
        for n, j in enumerate(kept):
            states[j] = handles[n * len(self.groups) : (n + 1) * len(self.groups)]
        return list(results), states, mom

    def cost_pass(self, centers_list, shift, name) -> np.ndarray:
        """Exact costs of several centre sets (one pass)."""
        sets = [K.prepare_centers(c, shift, self.dtype) for c in centers_list]
        return self.reduce(R.cost_chunk, R.combine_sum, name, centers_list, sets, shift)

    def label_pass(self, centers, shift, name, *, keep: str):
        """Final labels and exact cost.

        ``keep="persist"`` returns labels as a dask array held in memory (workers' or
        this process's), so touching them never re-reads the data; ``keep="compute"``
        returns a NumPy array.
        """
        cs = K.prepare_centers(centers, shift, self.dtype)
        shared = (centers, cs, shift)
        if keep == "compute":
            out = self.map_blocks(R.label_chunk, name, *shared)
            labels = np.concatenate([o[0] for o in out]) if out else np.empty(0, np.int32)
            return labels, R.combine_assignment([o[1] for o in out])
        b, key, refs = self._groups_pass(_label_chunk_kept, R.combine_assignment, name, shared,
                                         None, keep=True)  # fmt: skip
        label_keys = [  # in block order, whatever the groups
            b.add((f"{key}-labels", i), _kept, refs[g], j).key
            for i, (g, j) in enumerate(self._block_slots)
        ]
        node = 8 * centers.shape[0] + _NODE_OVERHEAD  # an Assignment: weights per cluster
        root = self._tree(b, key, refs, R.combine_assignment, kept=True, node_bytes=node)
        assignment, handles = root.run(b, label_keys)
        return self._kept_array(handles, f"{key}-labels", np.int32), assignment


def _call_pair(pair, xi, xj, shared, extras, offset):
    return pair(xi, xj, *shared, *extras, offset)


def _call_finalize(finalize, total, extras):
    return finalize(total, *extras)


def _kept(group_out, i):
    """Item ``i`` of what a group task kept (a seeder's state, or a block's labels)."""
    return group_out[1][i]


def _label_chunk_kept(X, w, centers, cs, shift):
    labels, assignment = R.label_chunk(X, w, centers, cs, shift)
    return assignment, labels


def _weight_total(_x, w) -> float:
    return _total(w)


def _total(w) -> float:
    xp = B.namespace(w)
    return float(xp.sum(xp.astype(w, xp.float64)))


@contextlib.contextmanager
def single_threaded_blas():
    """Let dask own the parallelism: BLAS inside chunk kernels runs on one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
