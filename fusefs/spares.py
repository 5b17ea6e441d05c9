"""Staging files made ahead and descriptors closed behind: file-system calls taken out of
the requests that would wait for them.

A `create` needs an empty staging file in the mount's journal folder
(`blobtree.new_staging_file`: O_TMPFILE, which on ext4 joins the orphan list in the journal;
on a busy disk it takes milliseconds). `SpareFiles` keeps a few made ahead, refilled in a
worker thread, so a create takes one without a call. When a closed file's commit is done, its
staged copy's descriptor is closed; the last close of an unnamed file frees its blocks, so
`Closer` does it in a worker thread rather than on the trio thread, which serves every request.

Both run as trio tasks of `OpenContents.run`; what is left at unmount is closed in `close`.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from cas.blobtree import new_staging_file
from cas.errors import StoreError

SPARE_FILES = 32  # staging files made ahead: more than a `cp -r` creates between two refills


class SpareFiles:
    """`folder` None: a read-only mount, which creates nothing and makes no spares."""

    def __init__(self, folder: Path | None, count: int = SPARE_FILES) -> None:
        self.folder = folder
        self.count = count
        self._ready: list[tuple[int, Path | None]] = []
        self._wanted = trio.Event()  # set by the first create: a mount that creates nothing makes none

    def take(self) -> tuple[int, Path | None] | None:
        """An empty staging file (fd, path: None when unnamed), or None when none is ready
        (the caller makes its own, in its worker thread)."""
        if self.folder is None:
            return None
        if len(self._ready) <= self.count // 2:
            self._wanted.set()
        return self._ready.pop() if self._ready else None

    async def run(self) -> None:
        """Refill, until cancelled. A refill that fails (a full disk) is tried again at the
        next take; creates make their own files meanwhile, and report the error."""
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            missing = self.count - len(self._ready)
            made = await trio.to_thread.run_sync(self._make, missing)
            self._ready.extend(made)

    def _make(self, count: int) -> list[tuple[int, Path | None]]:
        assert self.folder is not None  # take() wants none otherwise
        made = []
        try:
            for _ in range(count):
                made.append(new_staging_file(self.folder))
        except (OSError, StoreError):
            pass  # what was made is kept
        return made

    def close(self) -> None:
        for fd, path in self._ready:
            os.close(fd)
            if path is not None:
                path.unlink(missing_ok=True)
        self._ready.clear()


class Closer:
    def __init__(self) -> None:
        self._fds: list[int] = []
        self._wanted = trio.Event()

    def close_later(self, fd: int) -> None:
        self._fds.append(fd)
        self._wanted.set()

    async def run(self) -> None:
        """Close what is handed over, in a worker thread, until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            fds, self._fds = self._fds, []
            await trio.to_thread.run_sync(_close_all, fds)

    def close(self) -> None:
        fds, self._fds = self._fds, []
        _close_all(fds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
