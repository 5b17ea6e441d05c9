"""Files closed in a mount and not committed yet: the write-behind journal.

A mount commits the files closed through it in batches, in the background
(`fusefs/writebehind.py`), so `close()` waits for neither a flush nor a transaction. Until its
batch commits, a closed file is recorded in the mount's journal folder,
`<store>/tmp/closed-<mount id>/`, as its staged copy linked or moved there and named
`<seq>-<node>-<mtime in ns>`; the entry is removed only once the commit is done. The mount's
staging files live in the same folder (`stage-*`, or unnamed), so they belong to the mount
too. The folder is the mount's as long as the mount is alive, which its liveness lock proves
(`cas/mounts.py`); a mount whose lock is free is dead: the next mount, or `fsck --repair`,
takes the lock and commits what the journal holds (`recover`), so nothing closed before the
kill is lost, and removes the staging files. A file that was open and not closed is not in
the journal: as on a local filesystem, what its last close or fsync left stays.

Each entry's name also carries the content version it was written from (its *base*) and the
version it becomes (`<journal id>.<seq>`): the commit binds it to its node only if the node
is still at that base, or it becomes a conflict copy (docs/concurrency.md, "Many writers").
A file in the folder whose name is not an entry's (`unreadable`) never stops a mount: it is
left where it is, reported by fsck and saved by `fsck --repair` (`save_unreadable`).

Committing an entry links it to a fresh staging file, which the store installs as the blob
(or removes on a dedup hit); the entry itself stays until the transaction committed, so a
crash at any point leaves it to commit again. Of several entries for one node, only the
newest is committed: the older ones were replaced by it before anyone could see them.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cas import mounts
from cas.blobtree import STAGING_PREFIX, StagedFile, link_staging_file, seal_staged
from cas.model import PutResult
from cas.store import BATCH_FILES, StagedWrite, Store

log = logging.getLogger("assetfs.writeback")

JOURNAL_PREFIX = "closed-"


ENTRY_NAME = re.compile(r"e(?P<seq>\d{1,19})_n(?P<node>\d{1,19})_t(?P<mtime>-?\d{1,30})_b(?P<base>-|[0-9a-f.]{1,80})"
                        r"(?:_k(?P<bucket>[a-z0-9][a-z0-9._-]{0,62}))?")
LEGACY_ENTRY_NAME = re.compile(r"(?P<seq>\d{1,19})-(?P<node>\d{1,19})-(?P<mtime>-?\d{1,30})")  # before versions
NO_VERSION = "-"  # in an entry's name: the node had no version (a new file, or a node from before versions)
UNCHECKED = None  # base of an entry written before versions existed: committed without a check


@dataclass(frozen=True)
class ClosedFile:
    """One journal entry: the staged copy of a file closed in a mount."""

    path: Path
    seq: int
    node: int
    mtime_ns: int
    base: str | None  # the node's version the content was written from (None: none); see UNCHECKED
    checked: bool = True  # False for entries from before versions
    bucket: str | None = None  # the node's bucket: where the file goes should its node be deleted meanwhile

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

    @property
    def version(self) -> str:
        """The content version this entry becomes: `<journal id>.<seq>`, unique in the store."""
        return f"{self.path.parent.name.removeprefix(JOURNAL_PREFIX)}.{self.seq}"

    @classmethod
    def name_for(cls, seq: int, node: int, mtime_ns: int, base: str | None, bucket: str) -> str:
        return f"e{seq:012d}_n{node}_t{mtime_ns}_b{NO_VERSION if base is None else base}_k{bucket}"

    @classmethod
    def parse(cls, path: Path) -> ClosedFile | None:
        match = ENTRY_NAME.fullmatch(path.name)
        if match is not None:
            base = match["base"]
            return cls(path, int(match["seq"]), int(match["node"]), int(match["mtime"]),
                       None if base == NO_VERSION else base, bucket=match["bucket"])
        match = LEGACY_ENTRY_NAME.fullmatch(path.name)
        if match is not None:
            return cls(path, int(match["seq"]), int(match["node"]), int(match["mtime"]), None, checked=False)
        return None


Outcome = PutResult | None | Exception  # committed; nothing to commit (the node lost its names); failed


class Journal:
    """A mount's journal folder, held by whoever holds this object: the mount itself, or
    the recoverer that took a dead mount's liveness lock (`mount_lock`). The folder is also
    flocked, for mounts of older versions, which know only that lock."""

    def __init__(self, folder: Path, lock_fd: int, mount_lock: mounts.LivenessLock | None = None) -> None:
        self.folder = folder
        self._lock_fd = lock_fd
        self.mount_lock = mount_lock  # a dead registered mount's lock, held while it is recovered
        self._seq = max((entry.seq for entry in self.entries()), default=0)

    @property
    def mount_id(self) -> str:
        return self.folder.name[len(JOURNAL_PREFIX):]

    @classmethod
    def start(cls, tmp: Path, name: str | None = None) -> Journal:
        """A new, empty journal for a mount that is starting (`name`: its mount id, registered
        and locked already). It is flocked before it gets its journal name, so no mount of an
        older version takes it for the journal of a mount that ended."""
        name = name or uuid.uuid4().hex
        starting = tmp / f"starting-{name}"
        starting.mkdir()
        fd = os.open(starting, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = tmp / f"{JOURNAL_PREFIX}{name}"
        os.rename(starting, folder)
        return cls(folder, fd)

    def record(self, fd: int, staged: Path | None, node: int, bucket: str, mtime: float,
               base: str | None) -> ClosedFile:
        """Put a closed file's staged copy (`blobtree.new_staging_file`), written from content
        version `base` of `node` in `bucket`, into the journal."""
        self._seq += 1
        mtime_ns = round(mtime * 1e9)
        path = self.folder / ClosedFile.name_for(self._seq, node, mtime_ns, base, bucket)
        link_staging_file(fd, staged, self._lock_fd, path.name)
        return ClosedFile(path, self._seq, node, mtime_ns, base, bucket=bucket)

    def entries(self) -> list[ClosedFile]:
        found = (ClosedFile.parse(Path(entry.path)) for entry in os.scandir(self.folder))
        return sorted((entry for entry in found if entry is not None), key=lambda entry: entry.seq)

    def unreadable(self) -> list[Path]:
        """Files in the folder that are neither entries nor the mount's staging files
        (nothing this code wrote)."""
        return sorted(Path(entry.path) for entry in os.scandir(self.folder)
                      if ClosedFile.parse(Path(entry.path)) is None and not entry.name.startswith(STAGING_PREFIX))

    def close(self) -> bool:
        """Release the lock; remove the folder when it holds no entry and no file that is not
        one (staging files left in it belong to no one any more; strays stay for fsck). True
        when removed."""
        try:
            if self.entries() or self.unreadable():
                return False
            for entry in os.scandir(self.folder):
                os.unlink(entry.path)
            os.rmdir(self.folder)
            return True
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            return False
        finally:
            self.release()

    def release(self) -> None:
        """Release the locks, leaving the folder (and the mount's row) as they are."""
        os.close(self._lock_fd)
        if self.mount_lock is not None:
            self.mount_lock.release()


def is_journal(path: Path) -> bool:
    return path.name.startswith(JOURNAL_PREFIX) and path.is_dir()


def take_abandoned(path: Path, mount_lock: mounts.LivenessLock | None = None) -> Journal | None:
    """The journal at `path` locked for the caller; None while someone holds its folder
    (an older mount that runs, or another recoverer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        return Journal(path, fd, mount_lock)
    except FileNotFoundError:  # recovered and removed by someone else just now
        os.close(fd)
        return None


def abandoned_journals(store: Store, forget_empty: bool = True) -> Iterator[Journal]:
    """Each journal of a dead mount, locked while the caller handles it (docs/concurrency.md,
    "Mount liveness"). A registered mount is dead when its liveness lock can be taken; a dead
    mount without a journal is forgotten at once (with `forget_empty`). A journal folder with
    no row is an older version's: its folder flock decides, as it did then."""
    tmp = store.tree.tmp
    # folders first, rows second: a mount adds its row before it makes its folder, so a
    # folder seen here whose mount runs has its row in what is read next
    folders = sorted(Path(entry.path) for entry in os.scandir(tmp) if is_journal(Path(entry.path)))
    rows = {row.id for row in mounts.registered(store)}
    for mount_id in sorted(rows):
        lock = mounts.try_lock(store, mount_id)
        if lock is None:
            continue  # alive
        journal = take_abandoned(tmp / f"{JOURNAL_PREFIX}{mount_id}", lock)
        if journal is None:
            if forget_empty and not (tmp / f"{JOURNAL_PREFIX}{mount_id}").exists():
                mounts.forget(store, mount_id, lock)  # ended before it made its journal
            else:
                lock.release()
            continue
        yield journal
    for path in folders:
        if path.name[len(JOURNAL_PREFIX):] not in rows:
            journal = take_abandoned(path)
            if journal is not None:
                yield journal


def commit_closed(store: Store, closed: list[tuple[ClosedFile, str | None]],
                  made: Made | None = None) -> dict[ClosedFile, Outcome]:
    """Commit journal entries (each with its content's hash when known) in one batch; when
    the batch fails, one by one, so one bad entry does not hold back the others. Committed
    entries (and the older entries of their chains) leave the journal.

    A node's entries form chains, each entry written over the one before it (its base is that
    one's version). Of a chain only the newest entry is committed; it may bind to the node
    when the node is at the base of any entry of the chain (the older ones were the same
    writer's steps: committed already by an attempt that did not get to remove them, or
    never). A second chain of one node (a mount that let go of a version another writer
    replaced, and went on from the newer one) is committed beside the first, never dropped
    with it.

    `made`: by node, the object the writer's last commit of that node created and when (the
    mount keeps it across batches; updated here): a commit that replaces it may free it at
    once (cas/superseded.py)."""
    chains = _chains([entry for entry, _ in closed])
    hashes = dict(closed)
    items = [(chain[-1], hashes[chain[-1]], _accepted(chain)) for chain in chains]
    made = {} if made is None else made
    try:
        results = _commit(store, items, made)
    except Exception as error:
        if len(items) == 1:
            results = [error]
        else:
            results = [_commit_one(store, item, made) for item in items]
    outcomes: dict[ClosedFile, Outcome] = {}
    for chain, result in zip(chains, results):
        for entry in chain:
            outcomes[entry] = result
        _remember(made, chain[-1].node, result)
    _forget_old(store, made)
    for entry, outcome in outcomes.items():
        if not isinstance(outcome, Exception):
            entry.path.unlink(missing_ok=True)
    return outcomes


def _chains(entries: list[ClosedFile]) -> list[list[ClosedFile]]:
    """The entries in chains (oldest first in each): an entry extends the chain of its node
    whose newest entry's version is its base; entries from before versions all go into one
    chain per node, as they were committed then (newest wins)."""
    chains: list[list[ClosedFile]] = []
    for entry in sorted(entries, key=lambda entry: entry.seq):
        mine = [chain for chain in chains if chain[-1].node == entry.node]
        extended = next((chain for chain in mine
                         if chain[-1].version == entry.base or not (entry.checked and chain[-1].checked)), None)
        if extended is None:
            chains.append([entry])
        else:
            extended.append(entry)
    return chains


def _accepted(chain: list[ClosedFile]) -> frozenset[str | None] | None:
    """The node versions the chain's newest entry may replace (None: any, for old entries)."""
    if not all(entry.checked for entry in chain):
        return None
    return frozenset(entry.base for entry in chain)


Item = tuple[ClosedFile, str | None, frozenset[str | None] | None]  # entry, hash, accepted bases


Made = dict[int, tuple[str, float]]  # node → (object id, time.monotonic() of its commit)
MADE_KEPT = 4096  # past this many nodes remembered, those older than every bucket's window go


def _remember(made: Made, node: int, result: Outcome) -> None:
    """Record the object a commit of `node` created as its content (not one it deduplicated
    onto, a conflict copy or a trashed file); a failed commit leaves the record as it was."""
    if isinstance(result, Exception):
        return
    if result is not None and not (result.deduplicated or result.conflict or result.trashed):
        made[node] = (result.object.id, time.monotonic())
    else:
        made.pop(node, None)


def _forget_old(store: Store, made: Made) -> None:
    if len(made) <= MADE_KEPT:
        return
    config = store.config
    window = max([config.bucket_defaults.free_superseded,
                  *(bucket.free_superseded for bucket in config.buckets.values())])
    cutoff = time.monotonic() - window
    for node, (_, at) in list(made.items()):  # a copy: the other lane's thread may add meanwhile
        if at < cutoff:
            made.pop(node, None)


def _commit_one(store: Store, item: Item, made: Made) -> Outcome:
    try:
        return _commit(store, [item], made)[0]
    except Exception as error:
        return error


def _commit(store: Store, items: list[Item], made: Made) -> list[PutResult | None]:
    writes: list[StagedWrite] = []
    try:
        for entry, hash_hex, accepted in items:
            writes.append(StagedWrite(_staged_copy(store, entry, hash_hex), entry.node, entry.mtime,
                                      entry.version, accepted, entry.bucket, made.get(entry.node, (None,))[0]))
    except BaseException:
        for write in writes:
            store.tree.discard(write.staged)
        raise
    return store.put_staged_many(writes)  # consumes the staged copies, whatever happens


def _staged_copy(store: Store, entry: ClosedFile, hash_hex: str | None) -> StagedFile:
    """A second name for the entry's file in tmp/, sealed; the store consumes that name."""
    path = store.tree.tmp / f"commit-{uuid.uuid4().hex}"
    os.link(entry.path, path)
    try:
        return seal_staged(path, hash_hex=hash_hex)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def recover(store: Store, journal: Journal) -> tuple[int, int]:
    """Commit every entry of an abandoned journal, then remove it: (committed, failed)."""
    committed = failed = 0
    entries = journal.entries()
    for start in range(0, len(entries), BATCH_FILES):
        batch = entries[start:start + BATCH_FILES]
        for entry, outcome in commit_closed(store, [(entry, None) for entry in batch]).items():
            if isinstance(outcome, Exception):
                failed += 1
                log.error("could not commit %s, closed in a mount that ended: %s", entry.path, outcome)
            else:
                committed += 1
    for path in journal.unreadable():
        log.warning("%s is not a journal entry: left for `assetfs fsck --repair`, which saves it to bucket %s",
                    path, LOST_FOUND_BUCKET)
    mount_lock, journal.mount_lock = journal.mount_lock, None
    try:
        removed = journal.close()
    except BaseException:
        if mount_lock is not None:
            mount_lock.release()
        raise
    if mount_lock is not None:
        if removed:
            dropped = mounts.forget(store, journal.mount_id, mount_lock)
            if dropped:
                log.info("deleted %d nodes without a name kept by mount %s", dropped, journal.mount_id)
        else:
            mount_lock.release()  # still dead: recovered again next time
    return committed, failed


LOST_FOUND_BUCKET = "lost-found"


def save_unreadable(store: Store, journal: Journal) -> list[PutResult]:
    """Store each file of the journal that is not an entry as an object of bucket
    `lost-found`, named `journal-<journal id>/<file name>`, then remove it from the journal."""
    saved = []
    for path in journal.unreadable():
        if not path.is_file() or path.is_symlink():
            continue
        saved.append(store.put(LOST_FOUND_BUCKET, path, name=f"journal-{journal.mount_id}/{path.name}"))
        path.unlink()
    return saved


def recover_all(store: Store) -> tuple[int, int]:
    """Recover every abandoned journal of the store: (committed, failed)."""
    committed = failed = 0
    for journal in abandoned_journals(store):
        done, not_done = recover(store, journal)
        committed, failed = committed + done, failed + not_done
    return committed, failed

