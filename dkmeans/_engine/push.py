"""Small results a group task sends straight to the client that waits for them.

A pass whose group tasks keep per-row state (pruned Lloyd's bounds, labels) leaves
those tasks' outputs on the workers and needs only their first item, the group's tree
nodes.  Taking that item through an item task and a gather cost two
scheduler round trips after the last group ended (8-9 ms on a 2 x 1 LocalCluster, a
sixth of a pruned W1 pass).  Instead the group task logs its nodes as an event on the
client's topic (``Worker.log_event``): the scheduler forwards it on the client's
stream ahead of the task's own completion, so the nodes reach the client one hop after
the task ends.  The task's output, state and all, stays where it is, a future as
before: lineage, fault tolerance and the next pass's dependencies are unchanged.

Events are for small messages, and the scheduler keeps a topic's last ones
(``distributed.admin.low-level-log-length``, 1000) until the client leaves: nodes over
``dkmeans.push-bytes`` (64 KiB) are not sent, and the client takes them from the task's
output (an item task and a gather, as before).  The client's handler for its own topic
is this module's (``Client.subscribe_topic`` keeps one a topic).

The scheduler never drops a subscription, and as a client leaves it logs an event on
the client's topic once more after the client's stream has closed: to a subscriber,
that is a CRITICAL "Closed comm" traceback in the scheduler's log at every close.  A
scheduler plugin (sent by value: the scheduler need not have dkmeans) unsubscribes a
client the moment it says it is leaving.
"""

from __future__ import annotations

import logging
import pickle
import threading
import weakref

logger = logging.getLogger(__name__)

_TAG = "dkmeans-push"
_PLUGIN = "dkmeans-push-unsubscribe"


def first_pushed(topic: str, tag: str, limit: int, func, *args):
    """``func(*args)``, its first item sent to ``topic`` (the waiting client's id)."""
    out = func(*args)
    send(topic, tag, out[0], limit)
    return out


def send(topic: str, tag: str, value, limit: int) -> None:
    """Log ``value`` on ``topic`` from the worker running this task, if it pickles to at
    most ``limit`` bytes."""
    from distributed import get_worker

    try:
        worker = get_worker()
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # not on a worker, or not picklable: the client gathers it
        return
    if len(payload) <= limit:
        worker.log_event(topic, {_TAG: tag, "value": payload})


def _first(value):
    return value[0]


class Inbox:
    """A client's pushed values, by tag, for the passes waiting on them."""

    def __init__(self, client):
        self._ready = threading.Condition()
        self._waiting: set = set()
        self._values: dict = {}
        _unsubscribe_leaving_clients(client)
        client.subscribe_topic(client.id, self._receive)

    def _receive(self, event) -> None:
        msg = event[1]
        if not isinstance(msg, dict) or _TAG not in msg:
            return  # the scheduler's own events on the client's topic
        with self._ready:
            tag = msg[_TAG]
            if tag in self._waiting and tag not in self._values:
                self._values[tag] = msg["value"]
                self._ready.notify_all()

    def _wake(self, _future) -> None:
        with self._ready:
            self._ready.notify_all()

    def expect(self, tags) -> None:
        """Keep what arrives for ``tags`` (before their tasks are submitted)."""
        with self._ready:
            self._waiting.update(tags)

    def forget(self, tags) -> None:
        """Stop keeping what arrives for ``tags``, and drop what came."""
        with self._ready:
            self._waiting.difference_update(tags)
            for t in tags:
                self._values.pop(t, None)

    def collect(self, client, tags: list, futures: list) -> tuple[list, list]:
        """The first items of ``futures`` (the tasks of ``tags``): pushed, or gathered
        from the outputs of tasks that ended without pushing (too large); and the
        futures of those gathers.  Raises a task's error as ``gather`` would."""
        for f in futures:
            f.add_done_callback(self._wake)
        with self._ready:
            while True:
                missing = [i for i, t in enumerate(tags) if t not in self._values]
                if all(futures[i].done() for i in missing):
                    break
                if any(futures[i].status in ("error", "cancelled") for i in missing):
                    break
                if client.status in ("closing", "closed"):
                    raise RuntimeError("the client was closed while a pass ran")
                self._ready.wait(1.0)  # woken by an event or a task's end
            pushed = {i: self._values[t] for i, t in enumerate(tags) if t in self._values}
        for i in missing:
            if futures[i].status in ("error", "cancelled"):
                futures[i].result()  # raises the task's error
        # a task's event comes before its completion, on the same streams: one that
        # ended without it sent nothing
        firsts = [client.submit(_first, futures[i], pure=False) for i in missing]
        out = [pickle.loads(pushed[i]) if i in pushed else None for i in range(len(tags))]
        for i, v in zip(missing, client.gather(firsts) if firsts else [], strict=True):
            out[i] = v
        return out, firsts


def _unsubscribe_leaving_clients(client) -> None:
    """Have the scheduler unsubscribe each client from its own topic as it leaves (once
    a scheduler; where the plugin cannot be registered, the close is only noisier)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class UnsubscribeLeavingClient(SchedulerPlugin):  # local, so pickled by value
        idempotent = True

        def remove_client(self, scheduler, client):
            scheduler.unsubscribe_topic(client, client)

    try:
        client.register_plugin(UnsubscribeLeavingClient(), name=_PLUGIN)
    except Exception as err:  # an older or locked-down scheduler
        logger.debug("could not register %s on the scheduler: %r", _PLUGIN, err)


_INBOXES: dict[str, Inbox] = {}
_INBOXES_LOCK = threading.Lock()


def inbox(client) -> Inbox:
    """The client's inbox (subscribed to its topic once, dropped with the client)."""
    with _INBOXES_LOCK:
        box = _INBOXES.get(client.id)
        if box is None:
            box = _INBOXES[client.id] = Inbox(client)
            weakref.finalize(client, _INBOXES.pop, client.id, None)
        return box
