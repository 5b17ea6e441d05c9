"""What the mount shows, read from and written to the store: synchronous, one short catalog
transaction per call, called from worker threads (never on the trio thread) — except the
reads of `StoreView.read_now`, which the catalog answers at once or not at all (SQLite; see
`Operations.query`).

Paths are not parsed here: callers pass the keys of `fusefs.inodes`. Errors are the store's
(`NotFound`, `BadInput`, `names.TreeError`); `fusefs.errors` turns them into errnos.
"""

from __future__ import annotations

import base64
import errno
import json
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from cas import mounts, names, nodekinds
from cas.catalog import Transaction
from cas.catalog.base import Catalog, Reads, Row
from cas.errors import NotFound
from cas.model import ObjectInfo
from cas.store import Store
from cas.validate import check_bucket
from fusefs.inodes import BucketDir, Key, NamedNode

MAX_XATTR_BYTES = 64 * 1024  # all user xattrs of one node together

Entry = tuple[BucketDir | NamedNode, str]  # a name in a folder of a bucket's named tree
T = TypeVar("T")


@dataclass
class Attr:
    """The attributes of one inode, without its number."""

    is_dir: bool
    mode: int  # permission bits only
    uid: int
    gid: int
    size: int
    mtime: float
    ctime: float
    nlink: int = 1
    version: str | None = None  # a named file's content version (docs/concurrency.md, "Many writers")
    file_type: int = 0  # stat.S_IF* of a named node; 0: a folder or a file, as `is_dir` says
    atime: float | None = None  # None: shown as mtime (the id view)
    rdev: int = 0

    @property
    def st_mode(self) -> int:
        return (self.file_type or (stat.S_IFDIR if self.is_dir else stat.S_IFREG)) | self.mode


@dataclass
class Item:
    """One folder entry as readdir and lookup return it."""

    name: str
    key: Key
    attr: Attr


def node_attr(row: Row) -> Attr:
    """A named node's attributes (`names.node_attrs`). A symlink's size is its target's
    length; a folder has 2 + its subfolders links while it has a name (a bucket's top folder
    always), and a node without a name left (open, or a folder removed while open) has 0."""
    kind = row["kind"]
    is_dir = kind == nodekinds.DIR
    if is_dir:
        nlink = 2 + row["subdirs"] if row["nlink"] or row["roots"] else 0
    else:
        nlink = row["nlink"]
    if kind == nodekinds.SYMLINK:
        size = len(row["target"].encode())
    else:
        size = 0 if is_dir else (row["size"] or 0)
    return Attr(is_dir=is_dir, mode=row["mode"], uid=row["uid"], gid=row["gid"], size=size, mtime=row["mtime"],
                ctime=row["ctime"], nlink=nlink, version=row["version"], file_type=nodekinds.file_type(kind),
                atime=row["atime"], rdev=row["rdev"] or 0)


def id_dir_attr(info: ObjectInfo, owner: names.Owner) -> Attr:
    return _id_dir_attr(info.created_at, info.deleted_at, owner)


def _id_dir_attr(created_at: float, deleted_at: float | None, owner: names.Owner) -> Attr:
    """A live id folder is writable by the mount's owner (removing its file trashes the object)."""
    return Attr(is_dir=True, mode=0o755 if deleted_at is None else 0o555, uid=owner.uid, gid=owner.gid, size=0,
                mtime=created_at, ctime=created_at)


NO_WRITE = 0o555  # an object file is read-only whatever its names allow


def id_view_access(mount_owner: names.Owner, named: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """(mode, uid, gid) of an object's file in the id view, from the (mode, uid, gid) of the
    named files that refer to it (docs/fuse.md, "Who may read an object by id"): no path of
    the mount grants what one of them denies.

    - No named file: 0400, the mount's owner (who owns the store and can read it anyway).
    - Named files of one owner and group: theirs, with only the permissions every one of them
      grants (the AND of their modes), without write.
    - Several owners: the mount's owner may read (0400); group and others get only what every
      named file grants to others.
    """
    if not named:
        return 0o400, mount_owner.uid, mount_owner.gid
    common = NO_WRITE
    for mode, _, _ in named:
        common &= mode
    owners = {(uid, gid) for _, uid, gid in named}
    if len(owners) == 1:
        [(uid, gid)] = owners
        return common, uid, gid
    others = common & 0o007
    return 0o400 | others << 3 | others, mount_owner.uid, mount_owner.gid


def object_attr(info: ObjectInfo, mount_owner: names.Owner, named: list[tuple[int, int, int]]) -> Attr:
    mode, uid, gid = id_view_access(mount_owner, named)
    return Attr(is_dir=False, mode=mode, uid=uid, gid=gid, size=info.size, mtime=info.created_at,
                ctime=info.created_at)


def decode_xattrs(text: str) -> dict[str, bytes]:
    """`nodes.xattrs` (see cas/names.py) as name → bytes."""
    return {name: _decode_value(value) for name, value in json.loads(text or "{}").items()}


def _decode_value(value: str | dict) -> bytes:
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return value.encode("utf-8")


def encode_xattrs(xattrs: dict[str, bytes]) -> str:
    stored: dict[str, str | dict] = {}
    for name, value in sorted(xattrs.items()):
        try:
            stored[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            stored[name] = {"base64": base64.b64encode(value).decode("ascii")}
    return json.dumps(stored, ensure_ascii=False)


class StoreView:
    """The store as folders and files."""

    def __init__(self, store: Store, started: float | None = None, mount_id: str | None = None) -> None:
        self.store = store
        self.owner = names.Owner.current()
        self.started = started or time.time()
        self.mount_id = mount_id  # the mount keeps the nodes that lose their last name in it

    def _keep(self, tx: Transaction, node: int | None) -> None:
        """A node lost its last name here: record, in the same transaction, that this mount
        keeps it (it may be open), so no other mount or recoverer deletes it (cas/mounts.py)."""
        if node is not None and self.mount_id is not None:
            mounts.keep_node(tx, self.mount_id, node)

    def run(self, work, write: bool = False):
        """Changes to names are committed without waiting for the disk, as a local
        filesystem's are; fsync makes them durable (docs/concurrency.md, "Durability")."""
        return self.store.catalog.run(work, write=write, durable=False)

    def read_now(self, work: Callable[[Transaction], T]) -> T:
        """`work`, a read of a few rows, answered at once on the caller's thread: each of its
        statements is a `Catalog.read_now`, which raises WouldWait when it cannot answer
        without waiting (a lock in the way, too many steps, PostgreSQL always). Each
        statement reads the newest committed state, as a transaction of its own would."""
        return work(cast(Transaction, _ReadNow(self.store.catalog)))

    # virtual folders -----------------------------------------------------------------------

    def fixed_dir_attr(self) -> Attr:
        return Attr(is_dir=True, mode=0o755, uid=self.owner.uid, gid=self.owner.gid, size=0,
                    mtime=self.started, ctime=self.started)

    def buckets(self) -> list[str]:
        return self.store.buckets()

    def has_bucket(self, bucket: str) -> bool:
        return bucket in set(self.store.buckets())

    def bucket_attr(self, bucket: str) -> Attr:
        return self.run(lambda tx: self.bucket_attr_in(tx, bucket))

    def bucket_attr_in(self, tx: Transaction, bucket: str) -> Attr:
        """A bucket folder shows its named tree's root (owner, mode, times) once it has one."""
        row = _root_row(tx, bucket)
        return node_attr(row) if row is not None else self.fixed_dir_attr()

    # objects -------------------------------------------------------------------------------

    def object(self, bucket: str, object_id: str, trashed: bool | None = None) -> ObjectInfo:
        """An object of `bucket`: live (trashed False), in the trash (True), or either (None)."""
        if trashed is None:
            try:
                info = self.store.get(object_id)
            except NotFound:
                info = self.store.get_trashed(object_id)
        else:
            info = self.store.get_trashed(object_id) if trashed else self.store.get(object_id)
        if info.bucket != bucket:
            raise NotFound(f"no object {object_id} in bucket {bucket}")
        return info

    def id_dir_attr_in(self, tx: Transaction, bucket: str, object_id: str, trashed: bool | None) -> Attr | None:
        """The id folder of an object of `bucket` (live: trashed False, in the trash: True,
        either: None), from its row alone; None when there is no such object. `object_id`
        is in canonical form (`listing.is_id_name`)."""
        row = tx.one("select bucket, created_at, deleted_at from objects where id = :id", {"id": object_id})
        if row is None or row["bucket"] != bucket:
            return None
        if trashed is not None and (row["deleted_at"] is not None) != trashed:
            return None
        return _id_dir_attr(row["created_at"], row["deleted_at"], self.owner)

    def object_file_attr(self, info: ObjectInfo) -> Attr:
        """The attributes of an object's file in the id view (`id_view_access`): from the named
        files that refer to it, or for an object in the trash, from the names it had."""
        named = self.run(lambda tx: names.access_of_object(tx, info.id, trashed=info.deleted_at is not None))
        return object_attr(info, self.owner, named)

    def trash(self, bucket: str, object_id: str, filename: str) -> list[Entry]:
        """Removing /<bucket>/<id>/<filename>: the object moves to the trash (`Store.delete`).
        Returns the entries of the names it had (they are gone now)."""
        info = self.object(bucket, object_id)
        if info.filename != filename:
            raise NotFound(f"no {filename!r} in {object_id}")
        if info.deleted_at is not None:
            raise names.TreeError(errno.EPERM, "the trash is emptied by gc, not through the mount")
        entries = self.object_entries(bucket, object_id)
        self.store.delete(object_id)
        return entries

    def remove_id_folder(self, bucket: str, object_id: str) -> None:
        """rmdir /<bucket>/<id>: ENOTEMPTY while the object is live; done once it is in the trash."""
        if self.object(bucket, object_id).deleted_at is None:
            raise names.TreeError(errno.ENOTEMPTY, f"{object_id} still holds its file; 'rm -r' trashes it")

    def restore(self, bucket: str, object_id: str) -> None:
        """mv /.trash/<bucket>/<id> /<bucket>/: the object is live again, with the names it had
        that are still free."""
        self.object(bucket, object_id, trashed=True)
        self.store.restore(object_id)

    def object_entries(self, bucket: str, object_id: str) -> list[Entry]:
        """(folder, name) of each name of the object."""
        def find(tx: Transaction) -> list[Entry]:
            root = names.bucket_root(tx, bucket)
            return [(BucketDir(bucket) if row["parent_id"] == root else NamedNode(row["parent_id"]), row["name"])
                    for row in names.entries_of_object(tx, object_id)]

        return self.run(find)

    def objects(self, bucket: str, trashed: bool, after: str, limit: int) -> list[ObjectInfo]:
        return self.store.page(bucket, trashed, after, limit)

    def blob_path(self, hash_hex: str) -> str:
        return str(self.store.tree.blob_path(hash_hex))

    # the named tree ------------------------------------------------------------------------

    def root_node(self, bucket: str) -> int | None:
        return self.run(lambda tx: names.bucket_root(tx, bucket))

    def node(self, node: int) -> Row:
        return self.run(lambda tx: node_row(tx, node))

    def entries(self, folder: BucketDir | NamedNode, after: str, limit: int) -> list[Row]:
        return self.run(lambda tx: entry_rows(tx, folder, after, limit))

    def create(self, folder: BucketDir | NamedNode, name: str, is_dir: bool, mode: int, owner: names.Owner) -> Row:
        return self.make_node(folder, name, nodekinds.DIR if is_dir else nodekinds.FILE, mode, owner)

    def make_node(self, folder: BucketDir | NamedNode, name: str, kind: str, mode: int, owner: names.Owner,
                  target: str | None = None, rdev: int | None = None) -> Row:
        """A new node of any kind (cas/nodekinds.py): a symlink to `target`, a device `rdev`."""
        def make(tx: Transaction) -> Row:
            now = time.time()
            parent = _folder_node(tx, folder, create=True, owner=owner)
            node = names.create_node(tx, parent, name, kind, mode, owner, now, target=target, rdev=rdev)
            return names.node_attrs(tx, node)

        return self.run(make, write=True)

    def unlink(self, folder: BucketDir | NamedNode, name: str) -> tuple[int, bool]:
        def remove(tx: Transaction) -> tuple[int, bool]:
            node, last = names.unlink(tx, _existing_folder(tx, folder), name, time.time())
            if last:
                self._keep(tx, node)
            return node, last

        return self.run(remove, write=True)

    def rmdir(self, folder: BucketDir | NamedNode, name: str) -> int:
        def remove(tx: Transaction) -> int:
            node = names.remove_dir(tx, _existing_folder(tx, folder), name, time.time())
            self._keep(tx, node)
            return node

        return self.run(remove, write=True)

    def rename(self, old: BucketDir | NamedNode, old_name: str, new: BucketDir | NamedNode, new_name: str,
               replace: bool) -> int | None:
        def move(tx: Transaction) -> tuple[int | None, Callable[[], None] | None]:
            old_parent = _existing_folder(tx, old)
            new_parent = _folder_node(tx, new, create=True, owner=self.owner)
            if _bucket_of(tx, old_parent) != _bucket_of(tx, new_parent):
                raise names.TreeError(errno.EXDEV, "names move between buckets by copying")
            moved = names.lookup(tx, old_parent, old_name)
            orphan = names.rename(tx, old_parent, old_name, new_parent, new_name, time.time(), replace)
            self._keep(tx, orphan)
            follow = None
            if moved is not None and moved["kind"] == "file":
                follow = self.store.follow_rename(tx, moved["id"], old_name, new_name)
            return orphan, follow

        orphan, follow = self.run(move, write=True)
        if follow is not None:
            follow()
        return orphan

    def link(self, node: int, folder: BucketDir | NamedNode, name: str) -> Row:
        def add(tx: Transaction) -> Row:
            parent = _folder_node(tx, folder, create=True, owner=self.owner)
            row = names.node_attrs(tx, node)
            if row is None:
                raise names.TreeError(errno.ENOENT, "the file no longer exists")
            if row["bucket"] != _bucket_of(tx, parent):
                raise names.TreeError(errno.EXDEV, "hard links stay within one bucket")
            names.link(tx, node, parent, name, time.time())
            return names.node_attrs(tx, node)

        return self.run(add, write=True)

    def update(self, node: int, **fields: object) -> Row:
        def change(tx: Transaction) -> Row:
            if names.node_attrs(tx, node) is None:
                raise names.TreeError(errno.ENOENT, "the file no longer exists")
            names.update_node(tx, node, ctime=time.time(), **fields)
            return names.node_attrs(tx, node)

        return self.run(change, write=True)

    def update_bucket_root(self, bucket: str, **fields: object) -> Row:
        def change(tx: Transaction) -> Row:
            node = names.ensure_bucket(tx, bucket, time.time(), self.owner)
            names.update_node(tx, node, ctime=time.time(), **fields)
            return names.node_attrs(tx, node)

        return self.run(change, write=True)

    def node_xattrs(self, node: int) -> tuple[dict[str, bytes], ObjectInfo | None]:
        """The attributes set on a node, and the live object a file node refers to (None for a
        folder, or a file whose content is not committed yet)."""
        row = self.node(node)
        info = None
        if row["kind"] == "file" and row["object_id"] is not None:
            try:
                info = self.store.get(row["object_id"])
            except NotFound:
                pass  # trashed meanwhile: the name goes with it
        return decode_xattrs(row["xattrs"]), info

    def set_xattr(self, node: int, name: str, value: bytes | None) -> None:
        """Set (or with None remove) one xattr; ENODATA when removing one that is not there."""

        def change(tx: Transaction) -> None:
            row = names.node_attrs(tx, node)
            if row is None:
                raise names.TreeError(errno.ENOENT, "the file no longer exists")
            xattrs = decode_xattrs(row["xattrs"])
            if value is None:
                if xattrs.pop(name, None) is None:
                    raise names.TreeError(errno.ENODATA, f"no attribute {name}")
            else:
                xattrs[name] = value
                if sum(len(key) + len(data) for key, data in xattrs.items()) > MAX_XATTR_BYTES:
                    raise names.TreeError(errno.ENOSPC, "the file's attributes exceed 64 KiB")
            names.update_node(tx, node, xattrs=encode_xattrs(xattrs), ctime=time.time())

        self.run(change, write=True)

    def make_bucket(self, bucket: str, owner: names.Owner) -> None:
        check_bucket(bucket)
        if bucket in self.store.config.buckets:
            raise names.TreeError(errno.EEXIST, f"bucket {bucket!r} exists")
        self.run(lambda tx: names.create_bucket(tx, bucket, time.time(), owner), write=True)

    def remove_bucket(self, bucket: str) -> None:
        if bucket in self.store.config.buckets:
            raise names.TreeError(errno.EPERM, f"bucket {bucket!r} is configured in assetfs.toml")
        self.run(lambda tx: names.remove_bucket(tx, bucket), write=True)

    def delete_node(self, node: int) -> None:
        def delete(tx: Transaction) -> None:
            names.delete_node(tx, node)
            mounts.release_node(tx, node)

        self.run(delete, write=True)

    def drop_unlinked_nodes(self) -> int:
        return self.run(lambda tx: names.drop_unlinked_nodes(tx, time.time()), write=True)

    def node_name(self, node: int) -> str | None:
        return self.run(lambda tx: names.node_name(tx, node))


class _ReadNow(Reads):
    """The `Transaction` reads (`one`, `all`, `value`) of `StoreView.read_now`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self.catalog.read_now(sql, params or {})

    def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None


def node_row(tx: Transaction, node: int) -> Row:
    """A named node's attributes (`names.node_attrs`); ENOENT when it is gone."""
    row = names.node_attrs(tx, node)
    if row is None:
        raise names.TreeError(errno.ENOENT, f"node {node} no longer exists")
    return row


def lookup_row(tx: Transaction, folder: BucketDir | NamedNode, name: str) -> Row | None:
    parent = _folder_node(tx, folder)
    return None if parent is None else names.lookup_attrs(tx, parent, name)


def entry_rows(tx: Transaction, folder: BucketDir | NamedNode, after: str, limit: int) -> list[Row]:
    parent = _folder_node(tx, folder)
    return [] if parent is None else names.list_entries(tx, parent, after, limit)


def _root_row(tx: Transaction, bucket: str) -> Row | None:
    root = names.bucket_root(tx, bucket)
    return None if root is None else names.node_attrs(tx, root)


def _folder_node(tx: Transaction, folder: BucketDir | NamedNode, create: bool = False,
                 owner: names.Owner | None = None) -> int | None:
    """The node id of a folder; a bucket without a row gets one when `create`."""
    if isinstance(folder, NamedNode):
        return folder.node
    if create:
        return names.ensure_bucket(tx, folder.bucket, time.time(), owner or names.Owner.current())
    return names.bucket_root(tx, folder.bucket)


def _existing_folder(tx: Transaction, folder: BucketDir | NamedNode) -> int:
    node = _folder_node(tx, folder)
    if node is None:
        raise names.TreeError(errno.ENOENT, "the folder is empty")
    return node


def _bucket_of(tx: Transaction, node: int) -> str:
    row = names.node_attrs(tx, node)
    if row is None:
        raise names.TreeError(errno.ENOENT, "the folder no longer exists")
    return row["bucket"]
