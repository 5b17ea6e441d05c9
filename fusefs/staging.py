"""The content of named files while they are open: the committed blob, or a staged copy.

One `NodeContent` per named file node that is open or waiting for its commit (shared by all
its handles), so every reader sees every writer's bytes and `getattr` sees the size being
written. It is *clean* (reads come from the blob of the object the node refers to) until the
first write or truncate, which copies the newest content into a staging file in the mount's
journal folder, <store>/tmp/closed-<mount id>/ (copy-on-write: blobs are never opened for
writing; the folder is the mount's while it lives, so no one else removes the file). On
close (flush) of a writable handle, or when the last user of a node truncated by path is
done, the staged copy is *closed*: handed to the write-behind (`fusefs.writebehind`), which
commits it in the background through `Store.put_staged_many` (installed as a blob or dropped
on a dedup hit; the node then refers to the new object and the old one is touched). Until
then its fd stays open and serves reads, and a new write copies from it. Writes that arrive in order are hashed as they come
(`fusefs.hashing`), so the commit of a file written front to back does not read it again.
Writes go to the staged copy in pieces of at most 256 KiB, and its writeback is started as it
grows (`blobtree.pwrite_all`, `blobtree.EarlyWriteback`, as a put's staging does), so the
fsync of its commit, or of the writer's fsync(), finds little left to write.

A per-node trio lock orders the steps: a close never runs while a write is between its
copy and its pwrite, and fds are never closed under a running pread.
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from cas import sparse
from cas.blobtree import FICLONE, EarlyWriteback, new_staging_file, pwrite_all
from cas.store import Store
from cas.writeback import Outcome
from fusefs.hashing import SequentialHash
from fusefs.spares import Closer, SpareFiles
from fusefs.writebehind import Pending, WriteBehind

LINGER_S = 2.0  # longer than the kernel keeps a named file's attributes (operations.SHORT)


def _copy_file(source: int, target: int, size: int) -> None:
    """Copy `size` bytes of `source` into the empty `target`: a reflink where possible,
    else its data extents, so a sparse file's holes stay holes (cas/sparse.py)."""
    import fcntl

    try:
        fcntl.ioctl(target, FICLONE, source)
        return
    except OSError:
        pass
    sparse.copy_file(source, target, size)


@dataclass(eq=False)
class ClosedVersion:
    """A closed staged copy waiting for its commit; its fd serves reads meanwhile."""

    fd: int
    size: int
    pending: Pending


class NodeContent:
    def __init__(self, contents: OpenContents, node: int, bucket: str, hash_hex: str | None, size: int,
                 mtime: float, version: str | None) -> None:
        self.contents = contents
        self.store = contents.store
        self.node = node
        self.bucket = bucket
        self.max_size = self.store.config.bucket(bucket).max_size  # a write or truncate past it: EFBIG
        self.hash = hash_hex  # the committed content (None: the node has no object yet: empty)
        # the content version the next closed copy is written from: the node's, as read from
        # the catalog, or the version of this mount's last closed copy (docs/concurrency.md)
        self.version = version
        self.past_versions: set[str | None] = set()  # versions this content was written over
        self.size = size  # of the newest content: staged, closed or committed
        self.mtime = mtime
        self.changed_at = 0.0  # when a write or truncate here last changed the content: its ctime
        self.lock = trio.Lock()
        self.users = 0  # open handles, plus running path-based truncates
        self.closed: list[ClosedVersion] = []  # oldest first
        self.committed_at = -math.inf  # trio clock
        self.stale = False  # the node changed under this content: dropped once idle
        self._blob_fd: int | None = None
        self._staged_fd: int | None = None
        self._staged_path: Path | None = None
        self._writeback: EarlyWriteback | None = None  # of the staged copy, started as it grows
        self._hash = SequentialHash(broken=True)  # of the staged copy, while written in order

    def knows(self, version: str | None) -> bool:
        """Whether a row at `version` is this content's or older: not when another writer
        committed a version since (the content is then stale, and the row wins)."""
        if version != self.version and version not in self.past_versions:
            self.stale = True
        return not self.stale

    @property
    def dirty(self) -> bool:
        return self._staged_fd is not None

    @property
    def idle(self) -> bool:
        """No user, nothing staged, nothing waiting: the content can be dropped."""
        return self.users == 0 and self._staged_fd is None and not self.closed

    # reading and writing -------------------------------------------------------------------

    async def read(self, offset: int, size: int) -> bytes:
        async with self.lock:
            fd = await self._newest_fd()
            if fd is None:
                return b""
            return await trio.to_thread.run_sync(os.pread, fd, size, offset)

    def _check_size(self, size: int) -> None:
        if self.max_size is not None and size > self.max_size:
            raise OSError(errno.EFBIG, f"larger than the bucket's max_size ({self.max_size} bytes)")

    async def write(self, offset: int, data: bytes) -> int:
        self._check_size(offset + len(data))
        async with self.lock:
            fd = await self._stage(copy=True)
            written = await trio.to_thread.run_sync(_pwrite_hashing, fd, data, offset, self._hash, self._writeback)
            self.size = max(self.size, offset + written)
            self.mtime = self.changed_at = time.time()
            return written

    async def truncate(self, length: int) -> None:
        self._check_size(length)
        async with self.lock:
            fd = await self._stage(copy=length > 0)
            await trio.to_thread.run_sync(os.ftruncate, fd, length)
            self._hash = SequentialHash(broken=length > 0)
            self.size = length
            self.mtime = self.changed_at = time.time()

    def start_empty(self, fd: int, path: Path | None) -> None:
        """A new file (create): its staged copy is this empty file, made with the node."""
        self._staged_fd, self._staged_path = fd, path
        self._writeback = EarlyWriteback(fd)
        self._hash = SequentialHash()
        self.size = 0

    async def _newest_fd(self) -> int | None:
        if self._staged_fd is not None:
            return self._staged_fd
        if self.closed:
            return self.closed[-1].fd
        if self._blob_fd is None and self.hash is not None:
            path = self.store.tree.blob_path(self.hash)
            self._blob_fd = await trio.to_thread.run_sync(os.open, path, os.O_RDONLY)
        return self._blob_fd

    async def _stage(self, copy: bool) -> int:
        """The staged copy's fd, making it (copy-on-write) on the first change."""
        if self._staged_fd is not None:
            return self._staged_fd
        source = await self._newest_fd() if copy else None
        self._hash = SequentialHash(broken=source is not None and self.size > 0)  # copy-on-write

        def make() -> tuple[int, Path | None]:
            fd, path = new_staging_file(self.contents.writebehind.journal.folder)
            try:
                if source is not None:
                    _copy_file(source, fd, self.size)
            except BaseException:
                os.close(fd)
                if path is not None:
                    path.unlink(missing_ok=True)
                raise
            return fd, path

        self._staged_fd, self._staged_path = await trio.to_thread.run_sync(make)
        self._writeback = EarlyWriteback(self._staged_fd)
        return self._staged_fd

    # closing and committing ----------------------------------------------------------------

    async def close_staged(self, writebehind: WriteBehind) -> None:
        """Hand the staged copy, if any, to the write-behind; the content is clean again."""
        async with self.lock:
            if self._staged_fd is None:
                return
            size, hashing = self.size, self._hash
            pending = await writebehind.submit(self._staged_fd, self._staged_path, self.node, self.bucket, self.mtime,
                                               self.version, size, lambda: hashing.hex_digest(size), self._committed)
            self.closed.append(ClosedVersion(self._staged_fd, size, pending))
            self._staged_fd = self._staged_path = self._writeback = None
            self.past_versions.add(self.version)
            self.version = pending.closed.version

    async def _committed(self, pending: Pending, outcome: Outcome) -> None:
        """The write-behind's report on one of this content's closed versions."""
        if isinstance(outcome, Exception):
            return  # retried later; its version keeps serving reads
        async with self.lock:
            version = next(version for version in self.closed if version.pending is pending)
            self.closed.remove(version)
            self.contents.closer.close_later(version.fd)
            if outcome is not None and not outcome.conflict and outcome.object.hash != self.hash:
                self._close_blob()
                self.hash = outcome.object.hash
            if outcome is not None and outcome.conflict:
                self.stale = True  # the node holds someone else's newer version: not lingered on
            else:
                self.committed_at = trio.current_time()
        await self.contents.settled(self)

    async def wait_committed(self, writebehind: WriteBehind) -> None:
        """Until every closed version is committed (fsync); OSError(EIO) if one fails."""
        failed = await writebehind.settle([version.pending for version in self.closed])
        if failed:
            raise OSError(errno.EIO, f"the commit of node {self.node} failed: {failed[0].outcome}")

    # closing -------------------------------------------------------------------------------

    def _close_blob(self) -> None:
        if self._blob_fd is not None:
            os.close(self._blob_fd)
            self._blob_fd = None

    def close(self) -> None:
        """Release the fds; a staged copy still open is dropped (closed versions are in the
        journal, which the write-behind or the next mount commits)."""
        self._close_blob()
        for version in self.closed:
            os.close(version.fd)
        self.closed.clear()
        if self._staged_fd is not None:
            os.close(self._staged_fd)
            self._staged_fd = self._writeback = None
        if self._staged_path is not None:
            self._staged_path.unlink(missing_ok=True)
            self._staged_path = None


def _pwrite_hashing(fd: int, data: bytes, offset: int, hashing: SequentialHash,
                    writeback: EarlyWriteback | None) -> int:
    written = pwrite_all(fd, data, offset)
    hashing.wrote(offset, data)
    if writeback is not None:
        writeback.grew_to(offset + written)
    return written


class OpenContents:
    """The `NodeContent` of every named file that is open or waiting for its commit, by node.

    A content whose commit just finished lingers for LINGER_S before it is dropped: a lookup
    or getattr that read the node's row in a worker thread just before the commit must not
    hand the kernel the size of the content before it (while the content is here, its size
    and mtime win over the row's). `on_idle(node)` runs when a node's content is dropped
    (the mount then deletes a node that lost its last name).
    """

    def __init__(self, store: Store, writebehind: WriteBehind, on_idle: Callable[[int], Awaitable[None]]) -> None:
        self.store = store
        self.writebehind = writebehind
        self.on_idle = on_idle
        self._by_node: dict[int, NodeContent] = {}
        self._lingering: set[NodeContent] = set()
        self._detached: set[NodeContent] = set()  # replaced by a newer version, commits still to come
        self.spares = SpareFiles(writebehind.journal.folder if writebehind.journal is not None else None)  # for creates
        self.closer = Closer()  # committed copies' fds

    def get(self, node: int) -> NodeContent | None:
        return self._by_node.get(node)

    def acquire(self, node: int, bucket: str, hash_hex: str | None, size: int, mtime: float,
                version: str | None) -> NodeContent:
        """The node's content, for one more user; `hash_hex`, `size`, `mtime` and `version` are
        the node's row as just read. A content kept from before that no longer matches the row
        (another writer committed since) is replaced when no one has it open: lingering after
        its commit, or with closed versions still waiting for theirs, which go on to become
        conflict copies (docs/concurrency.md, "Many writers") while this open starts from the
        newer version."""
        content = self._by_node.get(node)
        if content is not None and content.users == 0 and not content.dirty and not content.knows(version):
            self._lingering.discard(content)
            del self._by_node[node]
            if content.idle:
                content.close()
            else:
                self._detached.add(content)
            content = None
        if content is None:
            content = NodeContent(self, node, bucket, hash_hex, size, mtime, version)
            self._by_node[node] = content
        content.users += 1
        return content

    async def release(self, content: NodeContent) -> None:
        """One user less; the last one closes what is staged."""
        content.users -= 1
        if content.users > 0:
            return
        try:
            await content.close_staged(self.writebehind)
        finally:
            await self.settled(content)

    async def settled(self, content: NodeContent) -> None:
        """Drop the content once nothing uses it or waits in it (and it is done lingering)."""
        if content in self._detached:
            if content.idle:
                self._detached.discard(content)
                content.close()
            return
        if not content.idle or self._by_node.get(content.node) is not content:
            return
        if not content.stale and trio.current_time() < content.committed_at + LINGER_S:
            self._lingering.add(content)
            return
        self._lingering.discard(content)
        del self._by_node[content.node]
        content.close()
        await self.on_idle(content.node)

    async def run(self) -> None:
        """Drop the contents that are done lingering; make spare staging files and close
        committed copies (fusefs/spares.py); until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.spares.run)
            nursery.start_soon(self.closer.run)
            await self._drop_lingering()

    async def _drop_lingering(self) -> None:
        while True:
            await trio.sleep(LINGER_S / 2)
            for content in list(self._lingering):
                if content.idle:
                    await self.settled(content)
                else:
                    self._lingering.discard(content)

    def close_all(self) -> None:
        for content in [*self._by_node.values(), *self._detached]:
            content.close()
        self.spares.close()
        self.closer.close()
        self._by_node.clear()
        self._lingering.clear()
        self._detached.clear()
