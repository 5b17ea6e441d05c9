"""The content of named files while they are open: the committed blob, or a staged copy.

One `NodeContent` per named file node that is open (shared by all its handles), so every
reader sees every writer's bytes and `getattr` sees the size being written. It is *clean*
(reads come from the blob of the object the node refers to) until the first write or
truncate, which copies the blob into a staging file in <store>/tmp (copy-on-write: blobs are
never opened for writing). A commit — on flush (close) or fsync of a writable handle, or
right after a path-based truncate — hashes the staged file and stores it through
`Store.put_staged`, which installs it as a blob (or drops it on a dedup hit), makes the node
refer to the new object and touches the old one; the content is clean again. Later writes
copy again. Writes that arrive in order are hashed as they come (`fusefs.hashing`), so the
commit of a file written front to back does not read it again.

A per-node trio lock orders the steps: a commit never runs while a write is between its
copy and its pwrite, and fds are never closed under a running pread.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import trio

from cas.blobtree import FICLONE, new_staging_file, seal_staged
from cas.store import Store
from fusefs.hashing import SequentialHash

log = logging.getLogger("assetfs.mount")


def _copy_file(source: int, target: int, size: int) -> None:
    """Copy `size` bytes of `source` into the empty `target`: a reflink where possible."""
    import fcntl

    try:
        fcntl.ioctl(target, FICLONE, source)
        return
    except OSError:
        pass
    offset = 0
    while offset < size:
        copied = os.copy_file_range(source, target, min(size - offset, 1 << 30), offset, offset)
        if copied == 0:
            break
        offset += copied


class NodeContent:
    def __init__(self, store: Store, node: int, bucket: str, hash_hex: str | None, size: int, mtime: float) -> None:
        self.store = store
        self.node = node
        self.bucket = bucket
        self.hash = hash_hex  # the committed content (None: the node has no object yet: empty)
        self.size = size
        self.mtime = mtime
        self.lock = trio.Lock()
        self.users = 0  # open handles, plus running path-based truncates
        self._blob_fd: int | None = None
        self._staged_fd: int | None = None
        self._staged_path: Path | None = None
        self._hash = SequentialHash(broken=True)  # of the staged copy, while written in order

    @property
    def dirty(self) -> bool:
        return self._staged_fd is not None

    # reading and writing -------------------------------------------------------------------

    async def read(self, offset: int, size: int) -> bytes:
        async with self.lock:
            fd = self._staged_fd if self._staged_fd is not None else await self._open_blob()
            if fd is None:
                return b""
            return await trio.to_thread.run_sync(os.pread, fd, size, offset)

    async def write(self, offset: int, data: bytes) -> int:
        async with self.lock:
            fd = await self._stage(copy=True)
            written = await trio.to_thread.run_sync(_pwrite_hashing, fd, data, offset, self._hash)
            self.size = max(self.size, offset + written)
            self.mtime = time.time()
            return written

    async def truncate(self, length: int) -> None:
        async with self.lock:
            fd = await self._stage(copy=length > 0)
            await trio.to_thread.run_sync(os.ftruncate, fd, length)
            self._hash = SequentialHash(broken=length > 0)
            self.size = length
            self.mtime = time.time()

    async def _open_blob(self) -> int | None:
        if self._blob_fd is None and self.hash is not None:
            path = self.store.tree.blob_path(self.hash)
            self._blob_fd = await trio.to_thread.run_sync(os.open, path, os.O_RDONLY)
        return self._blob_fd

    async def _stage(self, copy: bool) -> int:
        """The staged copy's fd, making it (copy-on-write) on the first change."""
        if self._staged_fd is not None:
            return self._staged_fd
        source = await self._open_blob() if copy else None
        self._hash = SequentialHash(broken=source is not None and self.size > 0)  # copy-on-write

        def make() -> tuple[int, Path]:
            fd, path = new_staging_file(self.store.tree.tmp)
            try:
                if source is not None:
                    _copy_file(source, fd, self.size)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
            return fd, path

        self._staged_fd, self._staged_path = await trio.to_thread.run_sync(make)
        return self._staged_fd

    # committing ----------------------------------------------------------------------------

    async def commit(self) -> None:
        """Store the staged copy as the node's new object, durably; nothing when clean.

        On failure the staged bytes are dropped (the error reaches close() or fsync()) and the
        node keeps the object it had.
        """
        async with self.lock:
            if self._staged_fd is None:
                return
            fd, path = self._staged_fd, self._staged_path
            self._staged_fd = self._staged_path = None
            try:
                new_hash, new_size = await trio.to_thread.run_sync(self._commit, fd, path)
            except BaseException:
                self.size = await trio.to_thread.run_sync(self._committed_size)
                raise
            if new_hash != self.hash:
                self._close_blob()
                self.hash = new_hash
            self.size = new_size

    def _commit(self, fd: int, path: Path) -> tuple[str | None, int]:
        try:
            os.close(fd)
            name = self._name()
            if name is None:  # every name was removed while open: the bytes go with them
                path.unlink(missing_ok=True)
                return self.hash, self.size
            staged = seal_staged(path, hash_hex=self._hash.hex_digest(os.stat(path).st_size))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        result = self.store.put_staged(self.bucket, staged, self.node, name, self.mtime)
        if result is None:
            return self.hash, self.size
        return staged.hash, staged.size

    def _name(self) -> str | None:
        from cas import names

        return self.store.catalog.run(lambda tx: names.node_name(tx, self.node), write=False)

    def _committed_size(self) -> int:
        if self.hash is None:
            return 0
        return self.store.tree.blob_size(self.hash) or 0

    # closing -------------------------------------------------------------------------------

    def _close_blob(self) -> None:
        if self._blob_fd is not None:
            os.close(self._blob_fd)
            self._blob_fd = None

    def close(self) -> None:
        """Release the fds (after the last user; a dirty copy is dropped, commit first)."""
        self._close_blob()
        if self._staged_fd is not None:
            os.close(self._staged_fd)
            self._staged_fd = None
        if self._staged_path is not None:
            self._staged_path.unlink(missing_ok=True)
            self._staged_path = None


def _pwrite_hashing(fd: int, data: bytes, offset: int, hashing: SequentialHash) -> int:
    written = _pwrite_all(fd, data, offset)
    hashing.wrote(offset, data)
    return written


def _pwrite_all(fd: int, data: bytes, offset: int) -> int:
    view = memoryview(data)
    written = 0
    while written < len(view):
        count = os.pwrite(fd, view[written:], offset + written)
        if count == 0:
            raise OSError(errno.EIO, "short write to the staged file")
        written += count
    return written


class OpenContents:
    """The `NodeContent` of every named file that is open, by node id."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_node: dict[int, NodeContent] = {}

    def get(self, node: int) -> NodeContent | None:
        return self._by_node.get(node)

    def acquire(self, node: int, bucket: str, hash_hex: str | None, size: int, mtime: float) -> NodeContent:
        content = self._by_node.get(node)
        if content is None:
            content = NodeContent(self.store, node, bucket, hash_hex, size, mtime)
            self._by_node[node] = content
        content.users += 1
        return content

    async def release(self, content: NodeContent) -> None:
        """One user less; the last one commits what is left and closes the fds."""
        content.users -= 1
        if content.users > 0:
            return
        try:
            await content.commit()
        finally:
            if content.users == 0 and self._by_node.get(content.node) is content:
                del self._by_node[content.node]
                content.close()

    def close_all(self) -> None:
        for content in self._by_node.values():
            content.close()
        self._by_node.clear()
