"""Folder listings for readdir: keyset pages, and offsets that stay valid while entries come
and go.

A listing walks its entries in key order, in *phases*: a bucket folder lists its named
entries (by name), then one `.by-id` folder; `.by-id` lists the bucket's live objects' id
folders (by id). A position is a cursor `(phase, last key)`;
readdir hands the kernel small integers as offsets, and the open folder handle maps each one
back to its cursor. Resuming after a cursor reads the next keys from the catalog, so an entry
created or removed meanwhile never shifts the others, nothing is listed twice, and memory
stays bounded: one page of rows, plus at most `MAX_CURSORS` remembered offsets per handle (an
offset older than that — only `seekdir` far back can ask for one — gets EINVAL).
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from dataclasses import dataclass, field

import pyfuse3
import trio

from cas.catalog.base import Row, WouldWait
from cas.ids import is_canonical_id
from cas.store import ZERO_ID
from cas.validate import ID_VIEW_FOLDER
from fusefs.inodes import (BucketDir, ByIdDir, IdDir, Key, NamedNode, ObjectFile, Root, Trash, TrashBucketDir)
from fusefs.view import Item, StoreView, entry_rows, id_dir_attr, node_attr

PAGE = 128
NOW_PAGE = 32  # rows of a named folder's page read on the trio thread (well within READ_NOW_STEPS)
MAX_CURSORS = 65536
TRASH_NAME = ".trash"
NAMES, IDS, END = 0, 1, 2

Cursor = tuple[int, str]
START: Cursor = (NAMES, "")


@dataclass
class DirHandle:
    key: Key
    cursors: OrderedDict[int, Cursor] = field(default_factory=OrderedDict)
    next_offset: int = 1
    # rows read past what the kernel's buffer took, kept for the readdir that resumes there
    leftover: list[tuple[Item, Cursor]] = field(default_factory=list)
    leftover_from: int = -1

    def cursor(self, offset: int) -> Cursor:
        if offset == 0:
            return START
        try:
            return self.cursors[offset]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None

    def offset_for(self, cursor: Cursor) -> int:
        offset = self.next_offset
        self.next_offset += 1
        self.cursors[offset] = cursor
        if len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return offset


async def page(view: StoreView, key: Key, cursor: Cursor, limit: int = PAGE) -> list[tuple[Item, Cursor]]:
    """Up to `limit` entries after `cursor`, each with the cursor just after it; [] at the end.
    A named folder's page (of at most NOW_PAGE) is read on the trio thread when the catalog
    answers at once (`StoreView.read_now`), else, like every other listing, in a worker thread."""
    if isinstance(key, (BucketDir, NamedNode)):
        phase, after = cursor
        now = min(limit, NOW_PAGE)
        try:
            rows = [] if phase == END else view.read_now(lambda tx: entry_rows(tx, key, after, now))
        except WouldWait:
            pass
        else:
            return _named(view, key, phase, rows, now)
    return await trio.to_thread.run_sync(_page, view, key, cursor, limit)


def _page(view: StoreView, key: Key, cursor: Cursor, limit: int) -> list[tuple[Item, Cursor]]:
    phase, after = cursor
    if isinstance(key, Root):
        return _small(_root_items(view), after, limit)
    if isinstance(key, Trash):
        items = [Item(bucket, TrashBucketDir(bucket), view.fixed_dir_attr()) for bucket in view.buckets()]
        return _small(items, after, limit)
    if isinstance(key, IdDir):
        info = view.object(key.bucket, key.object_id)
        item = Item(info.filename, ObjectFile(key.bucket, key.object_id), view.object_file_attr(info))
        return _small([item], after, limit)
    if isinstance(key, (TrashBucketDir, ByIdDir)):
        return _objects(view, key.bucket, isinstance(key, TrashBucketDir), ZERO_ID if phase == NAMES else after, limit)
    if isinstance(key, (BucketDir, NamedNode)):
        return _named(view, key, phase, [] if phase == END else view.entries(key, after, limit), limit)
    raise pyfuse3.FUSEError(errno.ENOTDIR)


def _named(view: StoreView, key: BucketDir | NamedNode, phase: int, rows: list[Row],
           limit: int) -> list[tuple[Item, Cursor]]:
    """A named folder's page from its entries' rows (`view.entries`); a bucket's ends with `.by-id`."""
    if phase == END:
        return []
    found = [(Item(row["name"], NamedNode(row["id"]), node_attr(row)), (NAMES, row["name"])) for row in rows
             if not (isinstance(key, BucketDir) and row["name"] == ID_VIEW_FOLDER)]  # hidden by the id view
    if len(rows) < limit and isinstance(key, BucketDir):
        found.append((by_id_item(view, key.bucket), (END, "")))
    return found


def by_id_item(view: StoreView, bucket: str) -> Item:
    """/<bucket>/.by-id: the mount's owner may remove id folders from it (that trashes them)."""
    return Item(ID_VIEW_FOLDER, ByIdDir(bucket), view.fixed_dir_attr())


def _root_items(view: StoreView) -> list[Item]:
    items = [Item(TRASH_NAME, Trash(), view.fixed_dir_attr())]
    items += [Item(bucket, BucketDir(bucket), view.bucket_attr(bucket)) for bucket in view.buckets()]
    return items


def _small(items: list[Item], after: str, limit: int) -> list[tuple[Item, Cursor]]:
    """A listing that is small enough to build whole (the root, /.trash, an id folder)."""
    ordered = sorted(items, key=lambda item: item.name)
    return [(item, (NAMES, item.name)) for item in ordered if item.name > after][:limit]


def _objects(view: StoreView, bucket: str, trashed: bool, after: str, limit: int) -> list[tuple[Item, Cursor]]:
    if limit <= 0:
        return []
    infos = view.objects(bucket, trashed, after, limit)
    gone = set() if trashed else view.store.keep_handed_out(infos)  # the ids go to the user (cas/superseded.py)
    return [
        (Item(info.id, IdDir(bucket, info.id), id_dir_attr(info, view.owner)), (IDS, info.id))
        for info in infos if info.id not in gone
    ]


def is_id_name(name: str) -> bool:
    """Whether a name in a bucket (or trash bucket) folder is an id folder's: the canonical id
    form only, so that other names, even ones `uuid.UUID` would parse, stay ordinary names."""
    return is_canonical_id(name)
