"""The FUSE operations: one small handler per request.

Handlers run as trio tasks on one thread; every catalog query and disk access goes to a
worker thread (`fusefs.view`, `fusefs.staging`, `fusefs.listing`), so a slow call never
stalls the mount. Short reads (lookup and getattr of named nodes and id folders, a named
folder's page) that the catalog answers at once (SQLite, no lock in the way:
`Operations.query`) are the exception: each saves a request its thread hop, which on a busy
machine waits for a core. Every handler is wrapped by `fusefs.errors.handler`: only
FUSEError leaves.

Errors of the read-only id view: changing an object's content or attributes is EROFS;
creating, removing or renaming names inside /<bucket>/<id>/ or /.trash is EPERM, except the
two moves of docs/fuse.md: removing a live object's file (`rm -r /<bucket>/<id>`) trashes the
object, and `mv /.trash/<bucket>/<id> /<bucket>/` restores it.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyfuse3
import trio

from cas import names, nodekinds
from cas.blobtree import new_staging_file
from cas.catalog import Transaction
from cas.catalog.base import Row, WouldWait
from cas.errors import NotFound
from cas.store import Store
from cas.validate import ID_VIEW_FOLDER
from fusefs import listing
from fusefs.errors import fail, handler
from fusefs.inodes import (BucketDir, ByIdDir, IdDir, InodeTable, Key, NamedNode, ObjectFile, Root, Trash,
                           TrashBucketDir, NODE_BASE)
from fusefs.staging import NodeContent, OpenContents
from fusefs.writebehind import WriteBehind
from fusefs.view import Attr, Entry, Item, StoreView, lookup_row, node_attr, node_row
from fusefs.xattrs import (PREFIX as XATTR_PREFIX, USER as USER_PREFIX, is_computed, lookup_name, named_xattrs,
                           object_xattrs, user_name)

log = logging.getLogger("assetfs.mount")

MAX_NAME_BYTES = 255
BLOCK_SIZE = 1024 * 1024  # st_blksize: cp and friends then read and write 1 MiB at a time (max_write)
SHORT = 1.0  # seconds the kernel may cache names and attributes that can change
LONG = 3600.0  # ... and those of immutable objects
ID_VIEW = (Trash, TrashBucketDir, ByIdDir, IdDir, ObjectFile)
ID_XATTR = XATTR_PREFIX + "id"
HAND_OUT_TRIES = 3  # a named file's version freed while its id was being handed out: look again


@dataclass
class ObjectHandle:
    fd: int


@dataclass
class NamedHandle:
    content: NodeContent
    writable: bool


Folder = BucketDir | NamedNode
T = TypeVar("T")


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, store: Store, writebehind: WriteBehind, read_only: bool = False) -> None:
        super().__init__()
        self.store = store
        self.view = StoreView(store, mount_id=writebehind.journal.mount_id if writebehind.journal else None)
        self.read_only = read_only
        self.inodes = InodeTable()
        self.writebehind = writebehind
        self.contents = OpenContents(store, writebehind, self.content_idle)
        self.handles: dict[int, ObjectHandle | NamedHandle | listing.DirHandle] = {}
        self.next_handle = 1
        self.unlinked: set[int] = set()  # nodes without a name, deleted when the kernel forgets them
        # the content version of each named file whose pages the kernel may cache: an open
        # of another version drops them (docs/fuse.md, "The kernel's caches")
        self.cached_versions: dict[int, str | None] = {}

    # helpers -------------------------------------------------------------------------------

    def key(self, inode: int) -> Key:
        key = self.inodes.key(inode)
        if key is None:
            raise fail(errno.ENOENT)
        return key

    def new_handle(self, handle: ObjectHandle | NamedHandle | listing.DirHandle) -> int:
        fh = self.next_handle
        self.next_handle += 1
        self.handles[fh] = handle
        return fh

    def entry(self, key: Key, attr: Attr) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = self.inodes.inode(key)
        entry.generation = 0
        # an object file's name and content never change, but its mode and owner follow its named
        # files' (id_view_access); an id folder's mode says whether it is trashed
        entry.entry_timeout = LONG if isinstance(key, ObjectFile) else SHORT
        entry.attr_timeout = SHORT
        if isinstance(key, NamedNode):
            content = self.contents.get(key.node)
            if content is not None and not attr.is_dir and content.knows(attr.version):
                attr.size, attr.mtime = content.size, content.mtime  # written here, maybe not committed yet
                attr.ctime = max(attr.ctime, content.changed_at)
        entry.st_mode = attr.st_mode
        entry.st_nlink = attr.nlink
        entry.st_uid, entry.st_gid = attr.uid, attr.gid
        entry.st_rdev = attr.rdev
        entry.st_size = attr.size
        entry.st_blksize = BLOCK_SIZE
        entry.st_blocks = math.ceil(attr.size / 512)
        entry.st_mtime_ns = _nanoseconds(attr.mtime)
        entry.st_atime_ns = _nanoseconds(attr.mtime if attr.atime is None else attr.atime)
        entry.st_ctime_ns = _nanoseconds(attr.ctime)
        return entry

    def remembered(self, key: Key, attr: Attr) -> pyfuse3.EntryAttributes:
        """An entry the kernel now knows one more time (lookup, create, mkdir, link)."""
        entry = self.entry(key, attr)
        self.inodes.remember(entry.st_ino)
        return entry

    async def thread(self, function, *args):
        return await trio.to_thread.run_sync(function, *args)

    async def query(self, work: Callable[[Transaction], T]) -> T:
        """A short catalog read: on this (the trio) thread when the catalog answers at once
        (`StoreView.read_now`: SQLite with no lock in the way), else in a worker thread, so a
        wait or a PostgreSQL round trip never stalls the mount."""
        try:
            return self.view.read_now(work)
        except WouldWait:
            return await self.thread(self.view.run, work)

    async def attr_of(self, key: Key) -> Attr:
        view = self.view
        if isinstance(key, (Root, Trash, TrashBucketDir, ByIdDir)):
            if isinstance(key, (TrashBucketDir, ByIdDir)) and not await self.thread(view.has_bucket, key.bucket):
                raise fail(errno.ENOENT)
            return view.fixed_dir_attr()
        if isinstance(key, BucketDir):
            return await self.query(lambda tx: view.bucket_attr_in(tx, key.bucket))
        if isinstance(key, IdDir):
            attr = await self.query(lambda tx: view.id_dir_attr_in(tx, key.bucket, key.object_id, None))
            if attr is None:
                raise fail(errno.ENOENT)
            return attr
        if isinstance(key, ObjectFile):
            info = await self.thread(view.object, key.bucket, key.object_id)
            return await self.thread(view.object_file_attr, info)
        return node_attr(await self.query(lambda tx: node_row(tx, key.node)))

    def writable_folder(self, key: Key) -> Folder:
        if self.read_only:
            raise fail(errno.EROFS)
        if isinstance(key, (BucketDir, NamedNode)):
            return key
        if isinstance(key, ID_VIEW):
            raise fail(errno.EPERM)
        raise fail(errno.EPERM)  # the root holds buckets only: mkdir makes one

    async def named_file(self, key: Key) -> dict:
        if not isinstance(key, NamedNode):
            raise fail(errno.EPERM)
        row = await self.query(lambda tx: node_row(tx, key.node))
        if row["kind"] == nodekinds.DIR:
            raise fail(errno.EISDIR)
        if row["kind"] != nodekinds.FILE:  # a symlink or special node: the kernel opens none here
            raise fail(errno.EINVAL)
        return row

    async def node_gone(self, node: int) -> None:
        """A node lost its last name: delete it now, or once the kernel forgets it."""
        if self.inodes.known(NODE_BASE + node) or self.contents.get(node) is not None:
            self.unlinked.add(node)
        else:
            await self.thread(self.view.delete_node, node)

    async def content_idle(self, node: int) -> None:
        """A node's content was dropped: delete the node if it has no name left and the
        kernel forgot it."""
        if node in self.unlinked and not self.inodes.known(NODE_BASE + node):
            self.unlinked.discard(node)
            await self.thread(self.view.delete_node, node)

    async def names_removed(self, entries: list[Entry]) -> None:
        """Trashing an object removed these names: drop the kernel's dentries for them before
        answering, so no path leads to their deleted nodes (a restore makes new ones). Safe to
        wait for: the request that trashes (unlink in an id folder) locks none of their folders."""
        for folder, name in entries:
            inode = self.inodes.known_inode(folder)
            if inode is not None:
                await self.thread(_invalidate_entry, inode, os.fsencode(name))

    # lookup and attributes -----------------------------------------------------------------

    @handler
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.key(parent_inode)
        text = _lookup_name(name)
        if isinstance(parent, (BucketDir, ByIdDir, TrashBucketDir)) and listing.is_id_name(text):
            item = await self._lookup_id(parent, text)
        elif isinstance(parent, NamedNode) or (isinstance(parent, BucketDir) and text != ID_VIEW_FOLDER):
            row = await self.query(lambda tx: lookup_row(tx, parent, text))
            item = None if row is None else Item(text, NamedNode(row["id"]), node_attr(row))
        else:
            item = await self.thread(self._lookup, parent, text)
        if item is None:
            raise fail(errno.ENOENT)
        return self.remembered(item.key, item.attr)

    def _lookup(self, parent: Key, name: str) -> Item | None:
        view = self.view
        try:
            if isinstance(parent, Root):
                if name == listing.TRASH_NAME:
                    return Item(name, Trash(), view.fixed_dir_attr())
                return Item(name, BucketDir(name), view.bucket_attr(name)) if view.has_bucket(name) else None
            if isinstance(parent, Trash):
                return Item(name, TrashBucketDir(name), view.fixed_dir_attr()) if view.has_bucket(name) else None
            if isinstance(parent, BucketDir) and name == ID_VIEW_FOLDER:
                return listing.by_id_item(view, parent.bucket) if view.has_bucket(parent.bucket) else None
            if isinstance(parent, ByIdDir):
                return None
            if isinstance(parent, IdDir):
                info = view.object(parent.bucket, parent.object_id)
                if info.filename != name:
                    return None
                return Item(name, ObjectFile(parent.bucket, info.id), view.object_file_attr(info))
        except NotFound:
            return None
        return None

    async def _lookup_id(self, parent: BucketDir | ByIdDir | TrashBucketDir, name: str) -> Item | None:
        """An id folder: live ones in a bucket and its .by-id, trashed ones in the trash."""
        trashed = isinstance(parent, TrashBucketDir)
        attr = await self.query(lambda tx: self.view.id_dir_attr_in(tx, parent.bucket, name, trashed))
        if attr is None:
            return None
        return Item(name, IdDir(parent.bucket, name, direct=isinstance(parent, BucketDir)), attr)  # direct: not listed

    @handler
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            try:
                if self.inodes.forget(inode, count) and inode >= NODE_BASE:
                    node = inode - NODE_BASE
                    self.cached_versions.pop(node, None)
                    if node in self.unlinked and self.contents.get(node) is None:
                        self.unlinked.discard(node)
                        await self.thread(self.view.delete_node, node)
            except Exception:  # forget must never fail
                log.exception("forget of inode %d failed", inode)

    @handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        key = self.key(inode)
        return self.entry(key, await self.attr_of(key))

    @handler
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        key = self.key(inode)
        if self.read_only:
            raise fail(errno.EROFS)
        if isinstance(key, (IdDir, ObjectFile)):
            raise fail(errno.EROFS)
        if not isinstance(key, (BucketDir, NamedNode)):
            raise fail(errno.EPERM)
        changes = _attr_changes(attr, fields)
        if fields.update_size:
            if isinstance(key, BucketDir):
                raise fail(errno.EISDIR)
            await self.truncate(key.node, attr.st_size)
        if isinstance(key, BucketDir):
            row = await self.thread(lambda: self.view.update_bucket_root(key.bucket, **changes))
            return self.entry(key, node_attr(row))
        content = self.contents.get(key.node)
        if content is not None and "mtime" in changes:
            content.mtime = changes["mtime"]
        row = await self.thread(lambda: self.view.update(key.node, **changes))
        if row["object_id"] is not None and changes.keys() & {"mode", "uid", "gid"}:
            await self.object_file_changed(row["bucket"], row["object_id"])
        return self.entry(key, node_attr(row))

    async def object_file_changed(self, bucket: str, object_id: str) -> None:
        """A named file's mode or owner changed: the kernel asks again for the attributes of
        the object's file in the id view (view.id_view_access), rather than after its timeout."""
        inode = self.inodes.known_inode(ObjectFile(bucket, object_id))
        if inode is not None:
            await self.thread(_invalidate_attributes, inode)

    async def truncate(self, node: int, length: int) -> None:
        row = await self.named_file(NamedNode(node))
        content = self.contents.acquire(node, row["bucket"], row["hash"], row["size"] or 0, row["mtime"],
                                        row["version"])
        try:
            await content.truncate(length)
        finally:
            await self.contents.release(content)  # closes the copy unless a handle keeps it open

    @handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        found = await self.thread(os.statvfs, self.store.root)
        data = pyfuse3.StatvfsData()
        for field in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"):
            setattr(data, field, getattr(found, field))
        data.f_namemax = MAX_NAME_BYTES
        return data

    # folders -------------------------------------------------------------------------------

    @handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        key = self.key(inode)
        if isinstance(key, ObjectFile):
            raise fail(errno.ENOTDIR)
        return self.new_handle(listing.DirHandle(key))

    @handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self.handles[fh]
        assert isinstance(handle, listing.DirHandle)
        if handle.leftover and handle.leftover_from == start_id:
            batch, handle.leftover = handle.leftover, []
        else:
            batch = await listing.page(self.view, handle.key, handle.cursor(start_id))
        while batch:
            for index, (item, cursor) in enumerate(batch):
                entry = self.entry(item.key, item.attr)
                offset = handle.offset_for(cursor)
                if not pyfuse3.readdir_reply(token, os.fsencode(item.name), entry, offset):
                    self.inodes.discard(entry.st_ino)
                    handle.leftover, handle.leftover_from = batch[index:], start_id
                    return
                self.inodes.remember(entry.st_ino)
                start_id = offset
            batch = await listing.page(self.view, handle.key, batch[-1][1])

    @handler
    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh, None)

    @handler
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.key(parent_inode)
        text = _new_name(name, parent)
        if isinstance(parent, Root) and not self.read_only:
            if text == listing.TRASH_NAME:
                raise fail(errno.EEXIST)
            await self.thread(self.view.make_bucket, text, _owner(ctx))
            key: Key = BucketDir(text)
            return self.remembered(key, await self.attr_of(key))
        folder = self.writable_folder(parent)
        row = await self.thread(self.view.create, folder, text, True, _permissions(mode, ctx), _owner(ctx))
        return self.remembered(NamedNode(row["id"]), node_attr(row))

    @handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.key(parent_inode)
        text = _lookup_name(name)
        if isinstance(parent, Root) and not self.read_only:
            if text == listing.TRASH_NAME:
                raise fail(errno.EPERM)
            await self.thread(self.view.remove_bucket, text)
            return
        if isinstance(parent, ByIdDir) and not self.read_only:  # rm -r /<bucket>/.by-id/<id>
            if not listing.is_id_name(text):
                raise fail(errno.ENOENT)
            await self.thread(self.view.remove_id_folder, parent.bucket, text)
            return
        folder = self.writable_folder(parent)
        if isinstance(folder, BucketDir) and listing.is_id_name(text):
            await self.thread(self.view.remove_id_folder, folder.bucket, text)
            return
        if isinstance(folder, BucketDir) and text == ID_VIEW_FOLDER:
            raise fail(errno.EPERM)
        node = await self.thread(self.view.rmdir, folder, text)
        await self.node_gone(node)

    # names ---------------------------------------------------------------------------------

    @handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self.key(parent_inode)
        if isinstance(parent, IdDir) and not self.read_only:  # rm -r /<bucket>/<id>: to the trash
            removed = await self.thread(self.view.trash, parent.bucket, parent.object_id, _lookup_name(name))
            await self.names_removed(removed)
            return
        folder = self.writable_folder(parent)
        node, last = await self.thread(self.view.unlink, folder, _lookup_name(name))
        if last:
            await self.node_gone(node)

    @handler
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
                     flags: int, ctx: pyfuse3.RequestContext) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise fail(errno.EINVAL)
        old_parent, new_parent = self.key(parent_inode_old), self.key(parent_inode_new)
        if isinstance(old_parent, TrashBucketDir) and not self.read_only:
            await self.restore(old_parent, _lookup_name(name_old), new_parent, _lookup_name(name_new))
            return
        old = self.writable_folder(old_parent)
        new = self.writable_folder(new_parent)
        old_name, new_name = _lookup_name(name_old), _new_name(name_new, new_parent)
        if isinstance(old, BucketDir) and (listing.is_id_name(old_name) or old_name == ID_VIEW_FOLDER):
            raise fail(errno.EPERM)
        replace = not flags & pyfuse3.RENAME_NOREPLACE
        orphan = await self.thread(self.view.rename, old, old_name, new, new_name, replace)
        if orphan is not None:
            await self.node_gone(orphan)

    async def restore(self, trash: TrashBucketDir, old_name: str, new_parent: Key, new_name: str) -> None:
        """`mv /.trash/<bucket>/<id> /<bucket>/.by-id/` (or `/<bucket>/`) restores the object; no
        other move leaves the trash."""
        if new_parent not in (BucketDir(trash.bucket), ByIdDir(trash.bucket)) or new_name != old_name \
                or not listing.is_id_name(old_name):
            raise fail(errno.EPERM)
        await self.thread(self.view.restore, trash.bucket, old_name)

    @handler
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        key = self.key(inode)
        parent = self.key(new_parent_inode)
        folder = self.writable_folder(parent)
        if not isinstance(key, NamedNode):
            raise fail(errno.EPERM)
        row = await self.thread(self.view.link, key.node, folder, _new_name(new_name, parent))
        return self.remembered(key, node_attr(row))

    # symlinks and special files (docs/fuse.md, "Symlinks, special files and times") -------

    @handler
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self.key(parent_inode)
        text = _new_name(name, parent)
        folder = self.writable_folder(parent)
        stored = nodekinds.symlink_target(target)
        row = await self.thread(lambda: self.view.make_node(folder, text, nodekinds.SYMLINK, nodekinds.SYMLINK_MODE,
                                                            _owner(ctx), target=stored))
        return self.remembered(NamedNode(row["id"]), node_attr(row))

    @handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        key = self.key(inode)
        if not isinstance(key, NamedNode):
            raise fail(errno.EINVAL)
        row = await self.query(lambda tx: node_row(tx, key.node))
        if row["kind"] != nodekinds.SYMLINK:
            raise fail(errno.EINVAL)
        return row["target"].encode()

    @handler
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """A regular file is made as create() and close() would (GNU tar makes the files it
        gives xattrs this way); FIFOs, sockets and devices are nodes without content."""
        kind = nodekinds.kind_of_mode(mode)
        if kind == nodekinds.FILE:
            info, entry = await self.create(parent_inode, name, mode, os.O_WRONLY, ctx)
            await self.flush(info.fh)
            await self.release(info.fh)
            return entry
        parent = self.key(parent_inode)
        text = _new_name(name, parent)
        folder = self.writable_folder(parent)
        row = await self.thread(lambda: self.view.make_node(folder, text, kind, _permissions(mode, ctx), _owner(ctx),
                                                            rdev=rdev if kind in nodekinds.DEVICES else None))
        return self.remembered(NamedNode(row["id"]), node_attr(row))

    # files ---------------------------------------------------------------------------------

    @handler
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self.key(parent_inode)
        text = _new_name(name, parent)
        folder = self.writable_folder(parent)
        spare = self.contents.spares.take()
        row, fd, path = await self.thread(self._create_file, folder, text, _permissions(mode, ctx), _owner(ctx), spare)
        content = self.contents.acquire(row["id"], row["bucket"], None, 0, row["mtime"], row["version"])
        content.start_empty(fd, path)  # staged and empty: the first close stores an (empty) object
        fh = self.new_handle(NamedHandle(content, writable=True))
        return pyfuse3.FileInfo(fh=fh), self.remembered(NamedNode(row["id"]), node_attr(row))

    def _create_file(self, folder: Folder, name: str, mode: int, owner: names.Owner,
                     spare: tuple[int, Path | None] | None) -> tuple[Row, int, Path | None]:
        fd, path = spare or new_staging_file(self.writebehind.journal.folder)
        try:
            return self.view.create(folder, name, False, mode, owner), fd, path
        except BaseException:
            os.close(fd)
            if path is not None:
                path.unlink(missing_ok=True)
            raise

    @handler
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        key = self.key(inode)
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable and self.read_only:
            raise fail(errno.EROFS)
        if isinstance(key, ObjectFile):
            if writable:
                raise fail(errno.EROFS)
            info = await self.thread(self.view.object, key.bucket, key.object_id)
            fd = await self.thread(os.open, self.view.blob_path(info.hash), os.O_RDONLY)
            return pyfuse3.FileInfo(fh=self.new_handle(ObjectHandle(fd)), keep_cache=True)
        row = await self.named_file(key)
        content = self.contents.acquire(row["id"], row["bucket"], row["hash"], row["size"] or 0, row["mtime"],
                                        row["version"])
        try:
            if writable and flags & os.O_TRUNC:
                await content.truncate(0)
        except BaseException:
            await self.contents.release(content)
            raise
        return pyfuse3.FileInfo(fh=self.new_handle(NamedHandle(content, writable)),
                                keep_cache=self.kernel_cache_current(content))

    def kernel_cache_current(self, content: NodeContent) -> bool:
        """Whether the pages the kernel caches for this file hold the content this open
        serves. The kernel keeps a file's pages across opens and drops them only when it sees
        the size or mtime change, which another writer's commit need not do (a 1-byte patch
        keeps the size, `cp -p` the mtime): an open of another version than the one last
        served drops them."""
        node = content.node
        current = node in self.cached_versions and self.cached_versions[node] == content.version
        self.cached_versions[node] = content.version
        return current

    @handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self.handles[fh]
        if isinstance(handle, ObjectHandle):
            return await self.thread(os.pread, handle.fd, size, off)
        assert isinstance(handle, NamedHandle)
        return await handle.content.read(off, size)

    @handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self.handles[fh]
        if not isinstance(handle, NamedHandle) or not handle.writable:
            raise fail(errno.EBADF)
        return await handle.content.write(off, buf)

    @handler
    async def flush(self, fh: int) -> None:
        """close(): the written copy goes to the write-behind, which commits it shortly."""
        handle = self.handles.get(fh)
        if isinstance(handle, NamedHandle) and handle.writable:
            await handle.content.close_staged(self.writebehind)

    @handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        """Durable before it returns: the file's content committed (fsynced blob, durable
        transaction), and its names and attributes with it."""
        handle = self.handles.get(fh)
        if isinstance(handle, NamedHandle):
            if handle.writable:
                await handle.content.close_staged(self.writebehind)
            await handle.content.wait_committed(self.writebehind)
        await self.thread(self.store.catalog.sync)

    @handler
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        """Durable before it returns: every file closed so far committed, every name change
        made so far (the mount commits those without waiting for the disk)."""
        failed = await self.writebehind.drain()
        if failed:
            raise fail(errno.EIO)
        await self.thread(self.store.catalog.sync)

    @handler
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if isinstance(handle, ObjectHandle):
            await self.thread(os.close, handle.fd)
        elif isinstance(handle, NamedHandle):
            await self.contents.release(handle.content)

    # extended attributes -------------------------------------------------------------------

    async def xattrs_of(self, key: Key, handing_out: bool = False) -> dict[str, bytes]:
        """`handing_out`: the object's id goes to the user (user.assetfs.id), so the object is
        kept from being freed at once first (`Store.keep_handed_out`); a named file whose
        version was freed just before that shows its newer one."""
        if isinstance(key, ObjectFile):
            info = await self.thread(self.view.object, key.bucket, key.object_id)
            if handing_out and await self.thread(self.store.keep_handed_out, [info]):
                raise fail(errno.ENOENT)
            return object_xattrs(info)
        if isinstance(key, NamedNode):
            for _ in range(HAND_OUT_TRIES):
                stored, info = await self.thread(self.view.node_xattrs, key.node)
                if not handing_out or info is None or not await self.thread(self.store.keep_handed_out, [info]):
                    break
            return named_xattrs(stored, info)
        return {}

    @handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not name.startswith(USER_PREFIX):  # only user.* exist here; the kernel asks for
            raise fail(pyfuse3.ENOATTR)       # security.capability before every write
        text = lookup_name(name)
        value = None if text is None else (await self.xattrs_of(self.key(inode), text == ID_XATTR)).get(text)
        if value is None:
            raise fail(pyfuse3.ENOATTR)
        return value

    @handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return [name.encode("utf-8") for name in sorted(await self.xattrs_of(self.key(inode)))]

    @handler
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.change_xattr(inode, name, value)

    @handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.change_xattr(inode, name, None)

    async def change_xattr(self, inode: int, name: bytes, value: bytes | None) -> None:
        key = self.key(inode)
        if self.read_only or isinstance(key, (ObjectFile, IdDir)):
            raise fail(errno.EROFS)
        text = user_name(name)
        if not isinstance(key, NamedNode):
            raise fail(errno.EPERM)
        if is_computed(text):  # the object's, as in the id view: writes change nothing (fusefs/xattrs.py)
            return
        await self.thread(self.view.set_xattr, key.node, text, value)

    # lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """After the main loop ended: close fds, delete the nodes that lost their names."""
        for handle in self.handles.values():
            if isinstance(handle, ObjectHandle):
                os.close(handle.fd)
        self.handles.clear()
        left = self.writebehind.finish()
        if left:
            log.error("%d closed files are not committed; the next mount commits them", left)
        self.contents.close_all()
        for node in sorted(self.unlinked):
            try:
                self.view.delete_node(node)
            except Exception:
                log.exception("could not delete unlinked node %d", node)
        self.unlinked.clear()


def _invalidate_entry(folder_inode: int, name: bytes) -> None:
    try:
        pyfuse3.invalidate_entry(folder_inode, name)
    except FileNotFoundError:
        pass  # the kernel does not have that entry cached


def _invalidate_attributes(inode: int) -> None:
    try:
        pyfuse3.invalidate_inode(inode, attr_only=True)
    except FileNotFoundError:
        pass  # the kernel no longer has the inode


def _nanoseconds(seconds: float) -> int:
    """Catalog times are doubles: exact to the microsecond, so that is what the mount shows."""
    return round(seconds * 1_000_000) * 1000


def _lookup_name(name: bytes) -> str:
    """A name to look up or remove: too long is ENAMETOOLONG; not UTF-8 cannot exist."""
    if len(name) > MAX_NAME_BYTES:
        raise fail(errno.ENAMETOOLONG)
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(errno.ENOENT) from None


def _new_name(name: bytes, parent: Key) -> str:
    """A name to create: also UTF-8 (EILSEQ) and, in a bucket folder, not an object id (EINVAL)
    nor `.by-id` (EEXIST: the id view is there)."""
    if len(name) > MAX_NAME_BYTES:
        raise fail(errno.ENAMETOOLONG)
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(errno.EILSEQ) from None
    if isinstance(parent, BucketDir) and listing.is_id_name(text):
        raise fail(errno.EINVAL)
    if isinstance(parent, BucketDir) and text == ID_VIEW_FOLDER:
        raise fail(errno.EEXIST)
    return text


def _owner(ctx: pyfuse3.RequestContext) -> names.Owner:
    return names.Owner(ctx.uid, ctx.gid)


def _permissions(mode: int, ctx: pyfuse3.RequestContext) -> int:
    return stat.S_IMODE(mode) & ~ctx.umask


def _attr_changes(attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields) -> dict[str, object]:
    changes: dict[str, object] = {}
    if fields.update_mode:
        changes["mode"] = stat.S_IMODE(attr.st_mode)
    if fields.update_uid:
        changes["uid"] = attr.st_uid
    if fields.update_gid:
        changes["gid"] = attr.st_gid
    if fields.update_atime:
        changes["atime"] = attr.st_atime_ns / 1e9
    if fields.update_mtime:
        changes["mtime"] = attr.st_mtime_ns / 1e9
    return changes
