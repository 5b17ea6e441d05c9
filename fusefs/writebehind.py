"""Write-behind: files closed in the mount are committed in batches, in the background.

`close()` (FUSE flush) of a written file moves its staged copy into the mount's journal
(`cas.writeback`) and queues it here; it does not wait for the commit. One trio task commits
whatever is queued, all at once, in a worker thread: one flush and one transaction for up to
BATCH_FILES files, while the next files are being written. So a sequential `cp -r` pays
neither an fsync nor a transaction per file, and a killed daemon loses nothing that was
closed (the next mount commits the journal).

`fsync()` of a file waits for that file's commit; `fsync()` of a folder waits for every file
closed before it (`drain`). A commit that fails is logged and retried with backoff, its file
kept in the journal; an fsync waiting for it gets the error after one attempt.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cas.store import BATCH_BYTES, BATCH_FILES, Store
from cas.writeback import ClosedFile, Journal, Made, Outcome, commit_closed

log = logging.getLogger("assetfs.mount")

# a closed file waits this long for others to share its commit, unless someone waits for it
# (tests set ASSETFS_WRITEBEHIND_GATHER_S to hold files in the journal until fsync or unmount)
GATHER_S = float(os.environ.get("ASSETFS_WRITEBEHIND_GATHER_S", "0.1"))
LARGE_BYTES = BATCH_BYTES  # a closed file larger than this is committed in the large lane
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0


@dataclass(eq=False)
class Pending:
    """A closed file waiting for its commit."""

    closed: ClosedFile
    size: int
    content_hash: Callable[[], str | None]  # computed while written, when it was (blocks: call in a thread)
    on_done: Callable[[Pending, Outcome], Awaitable[None]]
    attempted: trio.Event = field(default_factory=trio.Event)  # set after each attempt
    outcome: Outcome | None = None  # of the last attempt
    queued_at: float = 0.0
    attempts: int = 0
    retry_at: float = 0.0
    finished: bool = False  # committed, or nothing to commit

    async def wait(self, after: int) -> Outcome | None:
        """The outcome of the first attempt after the `after`th (of the last one, once finished)."""
        while not self.finished and self.attempts <= after:
            await self.attempted.wait()
        return self.outcome



class Lane:
    """A queue of closed files and the trio task that commits them, batch after batch."""

    def __init__(self, commit: Callable[[list[Pending]], dict[ClosedFile, Outcome]]) -> None:
        self._commit = commit  # blocks: runs in a worker thread
        self.queue: list[Pending] = []
        self.running: list[Pending] = []  # the batch being committed
        self._wakeup = trio.Event()
        self._settling = 0  # fsyncs waiting: commit what is ready without gathering more

    def holds(self, node: int) -> bool:
        return any(pending.closed.node == node for pending in (*self.running, *self.queue))

    def add(self, pending: Pending) -> None:
        self.queue.append(pending)
        if len(self.queue) in (1, BATCH_FILES):  # a new due time
            self._wakeup.set()

    async def settle(self, waiting: list[Pending]) -> list[Pending]:
        """Attempt these commits now (a failed one is not left to its backoff) and wait for
        one attempt of each, not more: those that failed. So an fsync (or an unmount) with
        commits that keep failing (a full disk) answers after one attempt per batch, never
        after their backoffs one after another (docs/concurrency.md, "Bounded failure")."""
        marks = {pending: pending.attempts for pending in waiting}
        for pending in waiting:
            pending.retry_at = 0.0
        self._settling += 1
        self._wakeup.set()
        try:
            failed = []
            for pending in waiting:
                if isinstance(await pending.wait(marks[pending]), Exception):
                    failed.append(pending)
            return failed
        finally:
            self._settling -= 1

    async def run(self) -> None:
        """Commit what is queued, batch after batch, until cancelled.

        A batch holds the catalog's write lock while it commits, which on SQLite makes every
        create in the mount wait: so files are gathered for GATHER_S (or until a batch is full,
        or someone waits in fsync) rather than committed as soon as the last batch is done.
        """
        while True:
            now = trio.current_time()
            due = self._due(now)
            if due > now:
                with trio.move_on_at(due):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            batch = self._next_batch(now)
            self.running = batch
            outcomes = await trio.to_thread.run_sync(self._commit, batch)  # not abandoned when cancelled
            self.running = []
            with trio.CancelScope(shield=True):  # an unmount does not lose track of a failed file
                await self._finish(batch, outcomes, trio.current_time())

    def _due(self, now: float) -> float:
        """When the next batch should start."""
        ready = [pending for pending in self.queue if pending.retry_at <= now]
        if ready and (self._settling or len(ready) >= BATCH_FILES):
            return now
        first_retry = min((pending.retry_at for pending in self.queue if pending.retry_at > now), default=math.inf)
        first_gathered = min((pending.queued_at + GATHER_S for pending in ready), default=math.inf)
        return min(first_retry, first_gathered)

    def _next_batch(self, now: float) -> list[Pending]:
        """Files due, up to the batch limits, with every other queued file of their nodes:
        the newest of a node is committed and the older ones go with it (never after it)."""
        nodes: set[int] = set()
        size = 0
        for pending in self.queue:
            if pending.retry_at > now or pending.closed.node in nodes:
                continue
            if nodes and (len(nodes) >= BATCH_FILES or size + pending.size > BATCH_BYTES):
                break
            nodes.add(pending.closed.node)
            size += pending.size
        batch = [pending for pending in self.queue if pending.closed.node in nodes]
        self.queue = [pending for pending in self.queue if pending.closed.node not in nodes]
        return batch

    async def _finish(self, batch: list[Pending], outcomes: dict[ClosedFile, Outcome], now: float) -> None:
        for pending in batch:
            outcome = outcomes[pending.closed]
            pending.outcome = outcome
            pending.attempts += 1
            if isinstance(outcome, Exception):
                delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (pending.attempts - 1))
                log.error("could not commit %s (node %d, attempt %d; retrying in %.0f s): %s",
                          pending.closed.path.name, pending.closed.node, pending.attempts, delay, outcome)
                pending.retry_at = now + delay
                self.queue.append(pending)
            else:
                pending.finished = True
            attempted, pending.attempted = pending.attempted, trio.Event()
            attempted.set()
            try:
                await pending.on_done(pending, outcome)
            except Exception:
                log.exception("after the commit of node %d", pending.closed.node)


class WriteBehind:
    """Two lanes: files larger than LARGE_BYTES, whose commit may hash gigabytes (when they
    were not written front to back), are committed apart from the others, so that they never
    hold back the commits and fsyncs of small files. A node's closed files stay in the lane
    that holds one of them, so that they are committed in order."""

    def __init__(self, store: Store, journal: Journal | None) -> None:
        self.store = store
        self.journal = journal  # None: a read-only mount, which closes no written file
        self.small = Lane(self._commit)
        self.large = Lane(self._commit)
        self.lanes = (self.small, self.large)
        self.made: Made = {}  # the objects this mount's commits created, by node (cas/superseded.py)

    async def submit(self, fd: int, staged: Path | None, node: int, bucket: str, mtime: float, base: str | None,
                     size: int, content_hash: Callable[[], str | None],
                     on_done: Callable[[Pending, Outcome], Awaitable[None]]) -> Pending:
        """Record a closed file of `node` in `bucket`, written from the node's content version
        `base`, in the journal (a link or rename in tmp/, in a worker thread) and queue its commit."""
        closed = await trio.to_thread.run_sync(self.journal.record, fd, staged, node, bucket, mtime, base)
        pending = Pending(closed, size, content_hash, on_done, queued_at=trio.current_time())
        lane = next((lane for lane in self.lanes if lane.holds(node)), self.large if size > LARGE_BYTES else self.small)
        lane.add(pending)
        return pending

    async def settle(self, waiting: list[Pending]) -> list[Pending]:
        """`Lane.settle` in both lanes at once: those of `waiting` that failed."""
        failed: list[Pending] = []

        async def settle_lane(lane: Lane) -> None:
            mine = [pending for pending in waiting if pending in lane.running or pending in lane.queue]
            if mine:
                failed.extend(await lane.settle(mine))

        async with trio.open_nursery() as nursery:
            for lane in self.lanes:
                nursery.start_soon(settle_lane, lane)
        return failed

    async def drain(self) -> list[Pending]:
        """`settle` every file closed so far."""
        return await self.settle([pending for lane in self.lanes for pending in (*lane.running, *lane.queue)])

    async def run(self) -> None:
        """Both lanes, until cancelled."""
        async with trio.open_nursery() as nursery:
            for lane in self.lanes:
                nursery.start_soon(lane.run)

    def _commit(self, batch: list[Pending]) -> dict[ClosedFile, Outcome]:
        try:
            return commit_closed(self.store, [(pending.closed, pending.content_hash()) for pending in batch], self.made)
        except Exception as error:  # commit_closed reports per file; this is a bug or the disk
            log.exception("committing %d closed files failed", len(batch))
            return {pending.closed: error for pending in batch}

    def finish(self) -> int:
        """After the mount ended (no trio loop): one last attempt at everything queued; what
        fails stays in the journal for the next mount. Returns how many files that is."""
        batch = [pending for lane in self.lanes for pending in (*lane.running, *lane.queue)]  # running: cancelled
        for lane in self.lanes:
            lane.queue, lane.running = [], []
        left = 0
        if batch:  # in one call, so that the entries of a node are committed together (newest wins)
            for closed, outcome in self._commit(batch).items():
                if isinstance(outcome, Exception):
                    left += 1
                    log.error("could not commit %s at unmount; the next mount will try again: %s",
                              closed.path.name, outcome)
        if self.journal is not None:
            self.journal.close()
        return left
