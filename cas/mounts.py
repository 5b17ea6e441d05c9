"""Mount liveness: which mounts of a store run, proved by a lock each holds.

A running mount has a row in `mounts` (docs/schema.md) and holds its *liveness lock* for as
long as its process lives:

- PostgreSQL: a session-level advisory lock, keyed by the mount id, on a connection of its
  own. The server drops it when the session ends (the process exits or is killed; a machine
  that vanishes is noticed by TCP keepalives within about half a minute). Every machine that
  uses the catalog sees it.
- SQLite (one machine): an exclusive flock on `tmp/mount-<id>.lock` (0600) in the store.

A mount is *dead* when its lock can be taken: whoever takes it (a starting mount, `fsck
--repair`) holds it while it recovers the mount's journal and nameless nodes, so no two
recover one mount, and a live mount is never taken for dead (docs/concurrency.md, "Mount
liveness"). The row's heartbeat is for people; the rule looks at the lock only.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cas.errors import StoreError
from cas.store import Store

log = logging.getLogger("assetfs.mounts")

LOCK_PREFIX = "mount-"
LOCK_SUFFIX = ".lock"
HEARTBEAT_S = 30.0
# The server notices a vanished client after idle + interval × count seconds.
_KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


@dataclass(frozen=True)
class MountRow:
    id: str
    host: str
    pid: int
    started_at: float
    heartbeat: float


class LivenessLock:
    """A mount's liveness lock, held by this process (the mount itself, or its recoverer)."""

    def release(self) -> None:
        raise NotImplementedError

    def check(self) -> bool:
        """Whether the lock is still held (PostgreSQL: the session is still there)."""
        return True


class _FileLock(LivenessLock):
    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        """Unlink the lock file (while still holding it), then release it."""
        self.path.unlink(missing_ok=True)
        self.release()


class _AdvisoryLock(LivenessLock):
    def __init__(self, connection) -> None:
        self.connection = connection

    def release(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()  # ends the session: the server releases its locks
            finally:
                self.connection = None

    def check(self) -> bool:
        try:
            self.connection.execute("select 1")
            return True
        except Exception:
            return False


def lock_path(store: Store, mount_id: str) -> Path:
    return store.tree.tmp / f"{LOCK_PREFIX}{mount_id}{LOCK_SUFFIX}"


def lock_file_mount(path: Path) -> str | None:
    """The mount id of a lock file's name in tmp/, or None when it is no lock file."""
    name = path.name
    if name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX):
        return name[len(LOCK_PREFIX):-len(LOCK_SUFFIX)] or None
    return None


def advisory_key(mount_id: str) -> int:
    """The 64-bit advisory lock key of a mount (a hash: no other assetfs lock uses this space
    in a way that could make a dead mount look alive for longer than a transaction)."""
    digest = hashlib.blake2b(f"assetfs-mount:{mount_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def try_lock(store: Store, mount_id: str, create: bool = False) -> LivenessLock | None:
    """Take a mount's liveness lock if no one holds it; None while its mount (or another
    recoverer) holds it. `create`: the mount's own lock, taken as it starts."""
    if store.catalog.dialect == "postgres":
        return _try_advisory(store, mount_id)
    return _try_file(lock_path(store, mount_id), create)


def _try_file(path: Path, create: bool) -> LivenessLock | None:
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    try:
        fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return None  # its recoverer removed it just now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return _FileLock(fd, path)


def _try_advisory(store: Store, mount_id: str) -> LivenessLock | None:
    import psycopg

    try:
        connection = psycopg.connect(store.catalog.url, autocommit=True, connect_timeout=15)
    except psycopg.Error as error:
        raise StoreError(f"cannot connect to the catalog database for the mount lock: {error}") from None
    try:
        for name, value in _KEEPALIVE.items():
            connection.execute(f"set {name} = {int(value)}")
        taken = connection.execute("select pg_try_advisory_lock(%s)", (advisory_key(mount_id),)).fetchone()[0]
    except BaseException:
        connection.close()
        raise
    if not taken:
        connection.close()
        return None
    return _AdvisoryLock(connection)


# the running mount ---------------------------------------------------------------------------


class LiveMount:
    """This process's mount, registered and holding its liveness lock until `end`."""

    def __init__(self, store: Store, mount_id: str, lock: LivenessLock) -> None:
        self.store = store
        self.id = mount_id
        self.lock = lock

    @classmethod
    def register(cls, store: Store) -> LiveMount:
        """Take a fresh id's lock, then add the row (in that order: a row whose lock is free
        is a dead mount's, so the lock must be held before anyone can see the row)."""
        mount_id = uuid.uuid4().hex
        lock = try_lock(store, mount_id, create=True)
        if lock is None:
            raise StoreError(f"the new mount id {mount_id} is locked already")
        now = time.time()
        try:
            store.catalog.run(lambda tx: tx.execute(
                "insert into mounts (id, host, pid, started_at, heartbeat) values (:id, :host, :pid, :now, :now)",
                {"id": mount_id, "host": socket.gethostname(), "pid": os.getpid(), "now": now}), write=True)
        except BaseException:
            _drop_lock(lock)
            raise
        return cls(store, mount_id, lock)

    def beat(self) -> None:
        """Record that the mount still holds its lock. A lock lost with its catalog session
        (the server restarted) is taken again if no one recovered the mount meanwhile; if
        someone did, that is logged loudly: the mount must be mounted again."""
        if not self.lock.check():
            self.lock.release()
            lock = try_lock(self.store, self.id)
            if lock is None:
                log.error("the mount's liveness lock was lost and is held by another process, which takes "
                          "this mount for dead; unmount and mount again")
                return
            self.lock = lock
        updated = self.store.catalog.run(lambda tx: tx.value(
            "update mounts set heartbeat = :now where id = :id returning id",
            {"id": self.id, "now": time.time()}), write=True)
        if updated is None:
            log.error("the mount's liveness lock was lost and the mount was recovered by another process, "
                      "which took it for dead; unmount and mount again")

    def end(self, forget: bool) -> None:
        """Release the lock; `forget` (the journal is empty and gone) removes the row first.
        A row left behind is a dead mount's, which the next mount or `fsck --repair` recovers."""
        if not forget:
            self.lock.release()  # the lock file stays: the row's recoverer takes it
            return
        try:
            self.store.catalog.run(lambda tx: _forget_rows(tx, self.id), write=True)
        finally:
            _drop_lock(self.lock)


def _drop_lock(lock: LivenessLock) -> None:
    if isinstance(lock, _FileLock):
        lock.remove()
    else:
        lock.release()


# other mounts ----------------------------------------------------------------------------------


def registered(store: Store) -> list[MountRow]:
    rows = store.catalog.run(lambda tx: tx.all(
        "select id, host, pid, started_at, heartbeat from mounts order by started_at, id"), write=False)
    return [MountRow(**row) for row in rows]


def forget(store: Store, mount_id: str, lock: LivenessLock) -> int:
    """Remove a dead mount (its lock held by the caller) after its journal was recovered:
    delete the nodes it kept for files open in it, then its rows; then drop its lock.
    Returns how many nodes were deleted."""
    from cas import names

    def work(tx) -> int:
        now = time.time()
        kept = [row["node_id"] for row in tx.all(
            "select node_id from mount_nodes where mount_id = :id", {"id": mount_id})]
        deleted = 0
        for node in kept:
            row = tx.one("select object_id from nodes n where id = :node and not exists "
                         "(select 1 from entries e where e.node_id = n.id)", {"node": node})
            if row is not None:
                names.touch_object(tx, row["object_id"], now)
                names.delete_node(tx, node)
                deleted += 1
        _forget_rows(tx, mount_id)
        return deleted

    try:
        return store.catalog.run(work, write=True)
    finally:
        _drop_lock(lock)


def _forget_rows(tx, mount_id: str) -> None:
    tx.execute("delete from mount_nodes where mount_id = :id", {"id": mount_id})
    tx.execute("delete from mounts where id = :id", {"id": mount_id})


def keep_node(tx, mount_id: str, node: int) -> None:
    """Record, in the transaction that took a node's last name, that this mount keeps it."""
    tx.execute("delete from mount_nodes where node_id = :node", {"node": node})
    tx.execute("insert into mount_nodes (node_id, mount_id) values (:node, :id)", {"node": node, "id": mount_id})


def release_node(tx, node: int) -> None:
    """The node was deleted (or got a name again): no mount keeps it any more."""
    tx.execute("delete from mount_nodes where node_id = :node and not exists "
               "(select 1 from nodes where id = :node and not exists "
               "(select 1 from entries where node_id = :node))", {"node": node})

