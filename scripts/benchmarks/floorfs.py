"""The floor: the smallest in-memory pyfuse3 filesystem that `cp -r`, `rsync -a`, `find | xargs
stat` and `ls -l` run on. The mount suite times it beside assetfs: what a pyfuse3 filesystem
costs when its handlers do no work (no thread hop, no catalog, no disk), so assetfs's time over
this one is what assetfs itself adds.

It answers like the assetfs mount where that changes the kernel's work: the same mount options
(`default_permissions`), 1 s entry and attribute timeouts, no writeback cache, ENOATTR for
every xattr. Everything lives in one process's memory and is gone when it is unmounted.

    python scripts/benchmarks/floorfs.py MOUNTPOINT     (foreground; fusermount3 -u ends it)
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import time
from dataclasses import dataclass, field

import pyfuse3
import trio

TIMEOUT = 1.0  # s, as the assetfs mount's entry and attribute timeouts for named files
BLOCK_SIZE = 1024 * 1024  # st_blksize, as assetfs's


@dataclass
class Node:
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    nlink: int = 1
    data: bytearray = field(default_factory=bytearray)
    children: dict[bytes, int] | None = None  # folders only: name → inode


def _now() -> int:
    return time.time_ns()


def _fail(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


class FloorFS(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self) -> None:
        super().__init__()
        now = _now()
        root = Node(stat.S_IFDIR | 0o755, os.getuid(), os.getgid(), now, now, now, nlink=2, children={})
        self.nodes: dict[int, Node] = {pyfuse3.ROOT_INODE: root}
        self.next_inode = pyfuse3.ROOT_INODE + 1
        self.listings: dict[int, list[tuple[bytes, int]]] = {}  # open folder handle → its entries
        self.next_handle = 1

    # helpers

    def node(self, inode: int) -> Node:
        try:
            return self.nodes[inode]
        except KeyError:
            raise _fail(errno.ENOENT) from None

    def folder(self, inode: int) -> dict[bytes, int]:
        children = self.node(inode).children
        if children is None:
            raise _fail(errno.ENOTDIR)
        return children

    def attributes(self, inode: int) -> pyfuse3.EntryAttributes:
        node = self.nodes[inode]
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode
        entry.entry_timeout = entry.attr_timeout = TIMEOUT
        entry.st_mode, entry.st_nlink = node.mode, node.nlink
        entry.st_uid, entry.st_gid = node.uid, node.gid
        entry.st_size = len(node.data)
        entry.st_blksize = BLOCK_SIZE
        entry.st_blocks = (len(node.data) + 511) // 512
        entry.st_atime_ns, entry.st_mtime_ns, entry.st_ctime_ns = node.atime_ns, node.mtime_ns, node.ctime_ns
        return entry

    def add(self, parent: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext) -> int:
        children = self.folder(parent)
        if name in children:
            raise _fail(errno.EEXIST)
        now = _now()
        is_dir = stat.S_ISDIR(mode)
        inode = self.next_inode
        self.next_inode += 1
        self.nodes[inode] = Node(mode & ~ctx.umask | (stat.S_IFDIR if is_dir else stat.S_IFREG), ctx.uid, ctx.gid,
                                 now, now, now, nlink=2 if is_dir else 1, children={} if is_dir else None)
        children[name] = inode
        self.touch(parent, now)
        return inode

    def touch(self, inode: int, now: int) -> None:
        node = self.nodes[inode]
        node.mtime_ns = node.ctime_ns = now

    def drop_name(self, parent: int, name: bytes) -> None:
        inode = self.folder(parent).pop(name)
        node = self.nodes[inode]
        node.nlink -= 1
        if node.nlink == 0 or node.children is not None:
            del self.nodes[inode]  # the kernel may still hold it; its requests then get ENOENT
        self.touch(parent, _now())

    # requests

    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        inode = self.folder(parent_inode).get(name)
        if inode is None:
            raise _fail(errno.ENOENT)
        return self.attributes(inode)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        self.node(inode)
        return self.attributes(inode)

    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.node(inode)
        now = _now()
        if fields.update_size:
            del node.data[attr.st_size:]
            node.data.extend(bytes(attr.st_size - len(node.data)))
            node.mtime_ns = now
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_atime:
            node.atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        node.ctime_ns = now
        return self.attributes(inode)

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        handle = self.next_handle
        self.next_handle += 1
        self.listings[handle] = list(self.folder(inode).items())
        return handle

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self.listings[fh]
        for offset in range(start_id, len(entries)):
            name, inode = entries[offset]
            if inode in self.nodes and not pyfuse3.readdir_reply(token, name, self.attributes(inode), offset + 1):
                return

    async def releasedir(self, fh: int) -> None:
        self.listings.pop(fh, None)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        inode = self.add(parent_inode, name, stat.S_IFDIR | stat.S_IMODE(mode), ctx)
        self.nodes[parent_inode].nlink += 1
        return self.attributes(inode)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        inode = self.folder(parent_inode).get(name)
        if inode is None:
            raise _fail(errno.ENOENT)
        if self.folder(inode):
            raise _fail(errno.ENOTEMPTY)
        self.drop_name(parent_inode, name)
        self.nodes[parent_inode].nlink -= 1

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        inode = self.folder(parent_inode).get(name)
        if inode is None:
            raise _fail(errno.ENOENT)
        if self.nodes[inode].children is not None:
            raise _fail(errno.EISDIR)
        self.drop_name(parent_inode, name)

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
                     flags: int, ctx: pyfuse3.RequestContext) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise _fail(errno.EINVAL)  # as assetfs
        old, new = self.folder(parent_inode_old), self.folder(parent_inode_new)
        inode = old.get(name_old)
        if inode is None:
            raise _fail(errno.ENOENT)
        replaced = new.get(name_new)
        if replaced is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise _fail(errno.EEXIST)
        if replaced is not None and replaced != inode:
            if self.nodes[replaced].children:
                raise _fail(errno.ENOTEMPTY)
            if self.nodes[replaced].children is not None:
                self.nodes[parent_inode_new].nlink -= 1
            self.drop_name(parent_inode_new, name_new)
        del old[name_old]
        new[name_new] = inode
        if self.nodes[inode].children is not None:  # a folder's ".." moves
            self.nodes[parent_inode_old].nlink -= 1
            self.nodes[parent_inode_new].nlink += 1
        now = _now()
        self.touch(parent_inode_old, now)
        self.touch(parent_inode_new, now)
        self.nodes[inode].ctime_ns = now

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        inode = self.add(parent_inode, name, stat.S_IFREG | stat.S_IMODE(mode), ctx)
        return pyfuse3.FileInfo(fh=inode), self.attributes(inode)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.node(inode)
        if flags & os.O_TRUNC:
            node.data.clear()
            node.mtime_ns = node.ctime_ns = _now()
        return pyfuse3.FileInfo(fh=inode)  # the handle is the inode: no per-open state

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return bytes(self.node(fh).data[off:off + size])

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        node = self.node(fh)
        if off > len(node.data):
            node.data.extend(bytes(off - len(node.data)))
        node.data[off:off + len(buf)] = buf
        node.mtime_ns = node.ctime_ns = _now()
        return len(buf)

    async def flush(self, fh: int) -> None:
        pass

    async def release(self, fh: int) -> None:
        pass

    async def fsync(self, fh: int, datasync: bool) -> None:
        pass

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        pass

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        raise _fail(pyfuse3.ENOATTR)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return []

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_blocks = data.f_bfree = data.f_bavail = 1 << 24
        data.f_files = data.f_ffree = data.f_favail = 1 << 24
        data.f_namemax = 255
        return data


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: floorfs.py MOUNTPOINT", file=sys.stderr)
        return 2
    pyfuse3.init(FloorFS(), argv[1], set(pyfuse3.default_options) | {"fsname=floorfs", "subtype=floorfs"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=False)  # fusermount3 -u unmounted it, which ended main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
