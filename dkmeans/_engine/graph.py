"""Low-level task graphs: built once per pass as a dict, run on the active scheduler.

The only module that touches dask's task specification (``dask._task_spec``, what
dask.array builds its own graphs with).  A pass is a dict ``{key: Task}`` on top of
the input's own (optimised once, cached) graph; it is handed straight to the
scheduler, so building it costs one small object per task: no Delayed objects, no
per-call culling, no re-optimisation of the input.

Values a pass keeps for a later one (per-row seeding costs, labels) are *handles*:
on a local scheduler the values themselves, embedded as data in the next graph; on a
distributed cluster the futures, which stay on the workers.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import dask
from dask._task_spec import DataNode, GraphNode, List, Task, TaskRef, Tuple, convert_legacy_graph
from dask.core import flatten
from dask.system import CPU_COUNT

from . import push as P
from .log import cluster_bar, local_bar, pass_label, progress_stream

__all__ = ["DataNode", "List", "Task", "TaskRef", "Tuple"]


def is_future(value) -> bool:
    """True for a distributed Future (a TaskRef whose value lives on the cluster)."""
    return isinstance(value, TaskRef) and type(value) is not TaskRef


class ArrayBlocks:
    """A dask array's blocks (along axis 0) as arguments of the tasks that read them.

    ``refs[i]`` stands for block ``i`` in a task's arguments and ``graph`` holds what
    the refs need, both made once (the input optimised as ``dask.compute`` would).
    A block whose task only reads (it depends on data alone: a Zarr or NumPy array,
    a seed) is *inlined*: the reading task runs inside the pass's own task, so a
    pass schedules one task per group of blocks, and no block travels between
    workers.  Other blocks are referenced by key, and blocks a cluster already holds
    (a persisted array) by their futures.
    """

    def __init__(self, array):
        keys = list(flatten(array.__dask_keys__()))
        raw = array.__dask_graph__()
        held = {k: v for k in keys if is_future(v := raw.get(k))}  # persisted on a cluster
        layers = {} if len(held) == len(keys) else dict(array.__dask_optimize__(raw, keys))
        graph = convert_legacy_graph({k: v for k, v in layers.items() if not is_future(v)})
        refs = []
        for key in keys:
            node = graph.get(key)
            if key in held:
                refs.append(held[key])
            elif isinstance(node, Task) and all(
                isinstance(graph.get(d), DataNode) for d in node.dependencies
            ):
                refs.append(node)
            else:
                refs.append(TaskRef(key))
        # blocks (or their inputs) already on a cluster's workers: tasks should run there
        self.cluster_held = bool(held) or any(
            d not in graph for node in graph.values() for d in node.dependencies
        )
        if all(isinstance(r, Task) for r in refs):  # every read inlined: keep the data only
            graph = {k: v for k, v in graph.items() if isinstance(v, DataNode)}
        self.array = array
        self.refs = refs
        self.graph = graph

    def __len__(self) -> int:
        return len(self.refs)

    def needed(self, indices) -> dict:
        """The part of ``graph`` that blocks ``indices`` depend on."""
        keys = set()
        for i in indices:
            ref = self.refs[i]
            keys.update(ref.dependencies if isinstance(ref, Task) else (ref.key,))
        return cull(self.graph, keys)


def cull(graph: dict, keys) -> dict:
    """The tasks of ``graph`` that ``keys`` depend on (keys outside it are external)."""
    out, stack = {}, [k for k in keys if k in graph]
    while stack:
        key = stack.pop()
        if key in out:
            continue
        node = graph[key]
        out[key] = node
        stack.extend(d for d in node.dependencies if d in graph and d not in out)
    return out


class Builder:
    """One pass's tasks: ``add`` a task, ``data`` a small shared value, ``kept`` a handle
    of an earlier pass; ``run`` hands the graph to the scheduler."""

    def __init__(self, client, label: str = "dask"):
        self.client = client
        self.label = label  # the pass's name, shown on its progress bar
        self.tasks: dict = {}
        self.bases: list[dict] = []
        self.handles: list = []  # earlier passes' futures this pass uses

    def include(self, graph: dict) -> None:
        """Add an input's graph (each distinct one once)."""
        if graph and not any(g is graph for g in self.bases):
            self.bases.append(graph)

    def add(self, key, func, *args) -> TaskRef:
        self.tasks[key] = Task(key, func, *args)
        return TaskRef(key)

    def data(self, key, value) -> TaskRef:
        """A small value shipped once with the graph (each worker fetches it once)."""
        self.tasks[key] = DataNode(key, value)
        return TaskRef(key)

    def keyed(self, ref) -> TaskRef:
        """``ref`` as a task of its own (for a block many tasks use: read once)."""
        if isinstance(ref, Task):
            self.tasks[ref.key] = ref
            return TaskRef(ref.key)
        return ref

    def kept(self, key, handle) -> TaskRef:
        """Reference a value an earlier pass kept (future, or local value)."""
        if is_future(handle):
            self.handles.append(handle)
            return handle
        return self.data(key, handle)

    def push_first(self, key, limit: int) -> None:
        """Have task ``key`` send its output's first item to this client, if it pickles
        to at most ``limit`` bytes (``push``)."""
        t = self.tasks[key]
        self.tasks[key] = Task(key, P.first_pushed, self.client.id, key, limit, t.func,
                               *t.args, **t.kwargs)  # fmt: skip

    def graph(self) -> dict:
        if not self.bases:
            return self.tasks
        dsk = {}
        for base in self.bases:
            dsk.update(base)
        dsk.update(self.tasks)
        return dsk

    def run(self, gather: list, keep: list = (), pushed: list = ()) -> tuple[list, list]:
        """Compute: values of ``gather``, then the first items of ``pushed`` (tasks
        made with ``push_first``), and handles of ``keep`` (values locally, futures on
        a cluster), with a progress bar when ``log.progress`` is on."""
        keep = list(keep)
        keys = list(gather) + keep
        dsk = self.graph()
        stream = progress_stream()
        label = pass_label(self.label)
        if self.client is None:
            get = local_get()
            bar = contextlib.nullcontext() if stream is None else local_bar(label, stream)
            with bar:
                values = list(get(dsk, keys))
            return values[: len(gather)], values[len(gather) :]
        keys += [k for k in pushed if k not in keep]
        box = P.inbox(self.client) if pushed else None
        if box is not None:
            box.expect(pushed)  # before the tasks can send them
        try:
            futures = self.client.get(dsk, keys, sync=False)
            release_held(id(self.client))  # the last pass's futures go now, after this one
            if stream is not None:
                cluster_bar(futures, label, stream)
            values = self.client.gather(futures[: len(gather)]) if gather else []
            firsts = []
            if box is not None:
                by_key = dict(zip(keys, futures, strict=True))
                got, firsts = box.collect(self.client, list(pushed), [by_key[k] for k in pushed])
                values += got
        finally:
            if box is not None:
                box.forget(pushed)
        hold_until_next_pass(id(self.client), [*futures, *firsts, *self.handles])
        return values, futures[len(gather) : len(gather) + len(keep)]


# id(client) -> (timer, futures): what a pass gathered and the handles it used, kept
# until the next pass is submitted.  A Client batches what it tells the scheduler, at
# most one message in 10 ms: released as a pass ended, they made the next pass's
# submission wait behind that message (12 ms from submission to the first task, 4 ms
# held).  A timer of its own releases them if no pass follows (the client's loop may
# be stopped by then).
_HELD: dict = {}
_HELD_LOCK = threading.Lock()
_HOLD_SECONDS = 1.0


def hold_until_next_pass(client_id: int, futures: list) -> None:
    """Keep ``futures`` (a pass's) until the client's next pass is submitted, or
    ``_HOLD_SECONDS`` have passed."""
    timer = threading.Timer(_HOLD_SECONDS, release_held, (client_id, futures))
    timer.daemon = True
    with _HELD_LOCK:
        old = _HELD.pop(client_id, None)
        _HELD[client_id] = (timer, futures)
    if old is not None:
        old[0].cancel()
    timer.start()


def release_held(client_id: int, futures: list | None = None) -> None:
    """Drop what ``client_id``'s last pass held (only if it is ``futures``, when given)."""
    with _HELD_LOCK:
        entry = _HELD.get(client_id)
        if entry is None or (futures is not None and entry[1] is not futures):
            return
        del _HELD[client_id]
    entry[0].cancel()


def local_get():
    """The local scheduler's get: the configured one, else the threaded one.

    dask's ``get_scheduler`` imports distributed to look for a Client (~0.4 s in a
    fresh process), even for a named local scheduler; none can exist before
    distributed is imported.
    """
    name = dask.config.get("scheduler", None)
    if "distributed" not in sys.modules:
        if name is None:
            return dask.threaded.get
        if isinstance(name, str) and name.lower() in dask.base.named_schedulers:
            return dask.base.named_schedulers[name.lower()]
    return dask.base.get_scheduler() or dask.threaded.get


def inline(value) -> DataNode:
    """``value`` as a task's own argument (no key: it travels inside each task using it)."""
    return DataNode(None, value)


def nested(items) -> GraphNode | tuple:
    """A tuple argument whose items may be task references (resolved before the call)."""
    if any(isinstance(v, GraphNode | TaskRef) for v in items):
        return Tuple(*items)
    return tuple(items)


def n_threads(client) -> int:
    """Threads that run tasks: the cluster's, or the local pool's."""
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    return int(dask.config.get("num_workers", None) or CPU_COUNT)
