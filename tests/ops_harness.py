"""Driving the mount's `fusefs.operations.Operations` without the kernel (pytest-trio).

An `OpsMount` is what `fusefs.mount.serve` builds, on a real store, minus pyfuse3's session:
the journal's recovery, a `WriteBehind` with a fresh journal, the `Operations`, the deletion
of unlinked leftovers, and the two background tasks (the write-behind and the lingering
contents) in a nursery. Tests call the handlers as the kernel would (lookup, create, write,
flush + release for close(), fsync, getattr, rename, unlink) and look at the catalog with
the store's own API. `kill()` leaves what SIGKILL leaves (the journal, unlocked; nothing
committed, no fd); `unmount()` does what the daemon does after its main loop.

Handlers that need a kernel session (readdir's replies, invalidate_entry) are not driven here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import pytest
import trio

from cas.store import Store
from cas.mounts import LiveMount
from cas.writeback import Journal, recover_all
from fusefs.operations import Operations
from fusefs.letgo import LetGo
from fusefs.writebehind import WriteBehind

ROOT_INODE = pyfuse3.ROOT_INODE


@dataclass
class RequestContext:
    """The fields of pyfuse3.RequestContext the handlers read."""

    uid: int = os.getuid()
    gid: int = os.getgid()
    pid: int = os.getpid()
    umask: int = 0o022


CTX = RequestContext()


@dataclass
class SetattrFields:
    """pyfuse3.SetattrFields, whose fields cannot be set from Python: the ones setattr reads."""

    update_atime: bool = False
    update_mtime: bool = False
    update_ctime: bool = False
    update_mode: bool = False
    update_uid: bool = False
    update_gid: bool = False
    update_size: bool = False


class OpsMount:
    def __init__(self, store: Store, operations: Operations, live: LiveMount) -> None:
        self.store = store
        self.ops = operations
        self.live = live
        self.let_go = LetGo(store)
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.ended = False

    @classmethod
    async def start(cls, nursery: trio.Nursery, store_root: Path) -> "OpsMount":
        store = Store.open(store_root)
        try:
            await trio.to_thread.run_sync(recover_all, store)
            live = LiveMount.register(store)
        except BaseException:
            store.close()
            raise
        try:
            writebehind = WriteBehind(store, Journal.start(store.tree.tmp, live.id))
        except BaseException:
            live.end(forget=True)
            store.close()
            raise
        mount = cls(store, Operations(store, writebehind), live)
        try:
            await trio.to_thread.run_sync(mount.ops.view.drop_unlinked_nodes)
        except BaseException:
            writebehind.journal.close()
            store.close()
            raise
        nursery.start_soon(mount._background)
        return mount

    async def _background(self) -> None:
        try:
            with self.scope:
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(self.ops.writebehind.run)
                    tasks.start_soon(self.ops.contents.run)
                    tasks.start_soon(self.let_go.run)
        finally:
            self.done.set()

    async def _stop_tasks(self) -> None:
        self.scope.cancel()
        await self.done.wait()
        self.ended = True

    async def unmount(self) -> None:
        """As the daemon after its main loop: commit what is queued, close, release the journal."""
        await self._stop_tasks()
        try:
            self.ops.close()
            self.let_go.check()
            self.live.end(forget=not self.ops.writebehind.journal.folder.exists())
        finally:
            self.store.close()

    async def kill(self) -> None:
        """What SIGKILL leaves: the journal unlocked, with whatever it holds; nothing more committed."""
        await self._stop_tasks()
        self.ops.contents.close_all()
        for handle in self.ops.handles.values():
            fd = getattr(handle, "fd", None)
            if fd is not None:
                os.close(fd)
        self.ops.handles.clear()
        self.ops.writebehind.journal.release()
        self.live.lock.release()  # its row stays: a dead mount's, for the next mount to recover
        self.store.close()

    # requests, as the kernel sends them ----------------------------------------------------

    async def lookup(self, parent: int, name: str) -> pyfuse3.EntryAttributes:
        return await self.ops.lookup(parent, name.encode(), CTX)

    async def bucket(self, bucket: str) -> int:
        """The bucket folder's inode, making the bucket when it has none."""
        try:
            return (await self.lookup(ROOT_INODE, bucket)).st_ino
        except pyfuse3.FUSEError:
            return (await self.ops.mkdir(ROOT_INODE, bucket.encode(), 0o755, CTX)).st_ino

    async def create(self, parent: int, name: str) -> tuple[int, int]:
        """(fh, inode) of a new file, open for writing."""
        info, entry = await self.ops.create(parent, name.encode(), 0o644, os.O_WRONLY | os.O_CREAT, CTX)
        return info.fh, entry.st_ino

    async def open(self, inode: int, flags: int) -> int:
        return (await self.ops.open(inode, flags, CTX)).fh

    async def close(self, fh: int) -> None:
        """close(2): flush, then release."""
        await self.ops.flush(fh)
        await self.ops.release(fh)

    async def write_file(self, parent: int, name: str, data: bytes, fsync: bool = False) -> int:
        """Write a whole file (create or O_TRUNC, write, close); its inode."""
        try:
            inode = (await self.lookup(parent, name)).st_ino
            fh = await self.open(inode, os.O_WRONLY | os.O_TRUNC)
        except pyfuse3.FUSEError:
            fh, inode = await self.create(parent, name)
        await self.ops.write(fh, 0, data)
        if fsync:
            await self.ops.fsync(fh, False)
        await self.close(fh)
        return inode

    async def append(self, inode: int, data: bytes) -> None:
        """open(O_APPEND) + write: the kernel writes at the size it has for the file."""
        size = (await self.ops.getattr(inode, CTX)).st_size
        fh = await self.open(inode, os.O_WRONLY | os.O_APPEND)
        await self.ops.write(fh, size, data)
        await self.close(fh)

    async def read_file(self, parent: int, name: str) -> bytes:
        inode = (await self.lookup(parent, name)).st_ino
        fh = await self.open(inode, os.O_RDONLY)
        try:
            return await self.ops.read(fh, 0, 1 << 20)
        finally:
            await self.close(fh)

    async def settle(self) -> None:
        """fsync of the mount's root: every file closed so far is committed."""
        fh = await self.ops.opendir(ROOT_INODE, CTX)
        try:
            await self.ops.fsyncdir(fh, False)
        finally:
            await self.ops.releasedir(fh)


Starter = Callable[[], Awaitable[OpsMount]]


@pytest.fixture
async def start_ops(store_root: Path) -> AsyncIterator[Starter]:
    """Starts `OpsMount`s on the test's store; every one still running is unmounted at the end."""
    async with trio.open_nursery() as nursery:
        started: list[OpsMount] = []

        async def start() -> OpsMount:
            mount = await OpsMount.start(nursery, store_root)
            started.append(mount)
            return mount

        try:
            yield start
        finally:
            with trio.CancelScope(shield=True):
                for mount in started:
                    if not mount.ended:
                        await mount.unmount()
