"""Inode numbers of the mount, and the kernel's lookup counts.

    1                  the mount's root (pyfuse3.ROOT_INODE)
    2                  /.trash
    16 … 2**48-1       virtual inodes: bucket folders, their .by-id folders, id folders and
                       object files, in /<bucket> and /.trash/<bucket>; numbered from a
                       counter while the kernel knows them (never reused during one mount)
    2**48 + node id    a node of a bucket's named tree (`nodes.id` in the catalog)

Named-tree inodes come from the catalog, so they are the same in every mount. Virtual
inodes are the mount's own: one is made when the kernel first learns of a key and dropped
when `forget` brings its lookup count to zero, so a 100,000-object bucket costs memory only
for what the kernel holds.

Everything here runs on the trio thread, between awaits: no locking.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyfuse3

ROOT_INODE = pyfuse3.ROOT_INODE
TRASH_INODE = 2
FIRST_VIRTUAL = 16
NODE_BASE = 1 << 48


@dataclass(frozen=True)
class Root:
    pass


@dataclass(frozen=True)
class Trash:
    pass


@dataclass(frozen=True)
class BucketDir:
    """/<bucket>: the root of the bucket's named tree, and its .by-id folder."""

    bucket: str


@dataclass(frozen=True)
class ByIdDir:
    """/<bucket>/.by-id: an id folder for each live object of the bucket."""

    bucket: str


@dataclass(frozen=True)
class TrashBucketDir:
    """/.trash/<bucket>: id folders of the bucket's trashed objects."""

    bucket: str


@dataclass(frozen=True)
class IdDir:
    """/<bucket>/.by-id/<id> or /.trash/<bucket>/<id>: holds the object's one file.

    One key (so one inode) whether the object is live or in the trash: moving it in or out
    of the trash moves the kernel's dentry, which must keep working at its new place.
    `direct`: the same folder looked up as /<bucket>/<id> (not listed there). It gets an inode
    of its own: a folder the kernel found at two paths at once would be a directory alias,
    which the kernel moves from one path to the other (or refuses) instead of keeping both.
    """

    bucket: str
    object_id: str
    direct: bool = False


@dataclass(frozen=True)
class ObjectFile:
    """/<bucket>/<id>/<filename> (or under /.trash): an object's immutable content."""

    bucket: str
    object_id: str


@dataclass(frozen=True)
class NamedNode:
    """A file or folder of a bucket's named tree."""

    node: int


Key = Root | Trash | BucketDir | ByIdDir | TrashBucketDir | IdDir | ObjectFile | NamedNode
VirtualKey = BucketDir | ByIdDir | TrashBucketDir | IdDir | ObjectFile


class InodeTable:
    """Maps inode numbers to what they show, and counts the kernel's lookups of each."""

    def __init__(self) -> None:
        self._next = FIRST_VIRTUAL
        self._by_key: dict[VirtualKey, int] = {}
        self._by_inode: dict[int, VirtualKey] = {}
        self.lookups: dict[int, int] = {}

    def key(self, inode: int) -> Key | None:
        """What `inode` shows, or None when the mount does not know it (any more)."""
        if inode == ROOT_INODE:
            return Root()
        if inode == TRASH_INODE:
            return Trash()
        if inode >= NODE_BASE:
            return NamedNode(inode - NODE_BASE)
        return self._by_inode.get(inode)

    def inode(self, key: Key) -> int:
        """The inode of `key`, numbering it when new. A new virtual inode is dropped again
        by `discard` unless `remember` counts a lookup of it."""
        if isinstance(key, Root):
            return ROOT_INODE
        if isinstance(key, Trash):
            return TRASH_INODE
        if isinstance(key, NamedNode):
            return NODE_BASE + key.node
        inode = self._by_key.get(key)
        if inode is None:
            inode = self._next
            self._next += 1
            if inode >= NODE_BASE:
                raise OverflowError("virtual inode numbers exhausted; remount")
            self._by_key[key] = inode
            self._by_inode[inode] = key
        return inode

    def remember(self, inode: int) -> None:
        """The kernel learned of `inode` once more (lookup, create, mkdir, link, readdirplus)."""
        self.lookups[inode] = self.lookups.get(inode, 0) + 1

    def discard(self, inode: int) -> None:
        """Drop a virtual inode that was numbered but never handed to the kernel."""
        if inode not in self.lookups:
            self._drop(inode)

    def forget(self, inode: int, count: int) -> bool:
        """The kernel dropped `count` lookups; True when it no longer knows the inode."""
        left = self.lookups.get(inode, 0) - count
        if left > 0:
            self.lookups[inode] = left
            return False
        self.lookups.pop(inode, None)
        self._drop(inode)
        return True

    def known(self, inode: int) -> bool:
        return inode in self.lookups

    def known_inode(self, key: Key) -> int | None:
        """The inode of `key` when the kernel knows it, without numbering a new one."""
        inode = self.inode(key) if isinstance(key, (Root, Trash, NamedNode)) else self._by_key.get(key)
        return inode if inode is not None and (inode in self.lookups or inode == ROOT_INODE) else None

    def _drop(self, inode: int) -> None:
        key = self._by_inode.pop(inode, None)
        if key is not None:
            del self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_inode)
