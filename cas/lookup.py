"""Objects found by name: `assetfs stat BUCKET/PATH` and `assetfs ls BUCKET/FOLDER/`.

A name is a path in a bucket's named tree (docs/schema.md, `nodes` and `entries`). The
walk reads one folder page per short transaction, so a large tree is listed in bounded
memory and without holding the catalog. Symbolic links and the other nodes without content
(cas/nodekinds.py) are no objects: `ls` passes over them, `stat` of one says what it is,
and no path is resolved through a symlink (the kernel does that, in the mount).
"""

from collections.abc import Iterator
from dataclasses import dataclass

from cas import names, nodekinds
from cas.catalog.base import Transaction, in_list
from cas.errors import BadInput, NotFound
from cas.model import ObjectInfo
from cas.store import Store
from cas.validate import check_bucket, check_filename

PAGE = 500


@dataclass(frozen=True)
class NamedPath:
    bucket: str
    parts: list[str]  # empty: the bucket's top folder
    folder: bool  # written with a trailing '/'

    @property
    def text(self) -> str:
        return "/".join([self.bucket, *self.parts])


def parse_named_path(text: str, what: str) -> NamedPath:
    """`BUCKET/PATH` (or `BUCKET/FOLDER/`), checked like the names a put gives."""
    bucket, _, rest = text.partition("/")
    try:
        check_bucket(bucket)
        parts = [part for part in rest.split("/") if part != ""] if rest else []
        if "//" in rest:
            raise BadInput(f"{text!r} has an empty folder name")
        for part in parts:
            check_filename(part, "name")
    except BadInput as error:
        raise BadInput(f"{what} {text!r}: {error}") from None
    return NamedPath(bucket, parts, folder=text.endswith("/"))


def _node(tx: Transaction, path: NamedPath) -> dict | None:
    """The node that `path` names ({"id", "kind", "object_id"}); None when nothing has that name."""
    root = names.bucket_root(tx, path.bucket)
    if root is None:
        return None
    node: dict | None = {"id": root, "kind": "dir", "object_id": None}
    for part in path.parts:
        if node is None or node["kind"] != "dir":
            return None
        node = names.lookup(tx, node["id"], part)
    return node


def object_at(store: Store, path: NamedPath) -> str:
    """The id of the object that a name refers to; NotFound for a missing name or a folder."""
    node = store.catalog.run(lambda tx: _node(tx, path), write=False)
    if node is None or (node["kind"] == "file" and node["object_id"] is None):
        raise NotFound(f"no object named {path.text}")
    if node["kind"] == "dir":
        raise NotFound(f"{path.text} is a folder, not an object; 'assetfs ls {path.text.rstrip('/')}/' lists it")
    if node["kind"] == nodekinds.SYMLINK:
        raise NotFound(f"{path.text} is a symbolic link to {node['target']!r}, not an object")
    if node["kind"] != nodekinds.FILE:
        raise NotFound(f"{path.text} is a {nodekinds.describe(node['kind'])}, not an object")
    return node["object_id"]


def _files_under(store: Store, folder: int, prefix: str) -> Iterator[tuple[str, str]]:
    """(path, object id) of every file below a folder, depth first in name order."""
    after = ""
    while True:
        entries = store.catalog.run(lambda tx: names.list_entries(tx, folder, after, PAGE), write=False)
        for entry in entries:
            path = f"{prefix}{entry['name']}"
            if entry["kind"] == "dir":
                yield from _files_under(store, entry["id"], path + "/")
            elif entry["object_id"] is not None:  # None: a mount's file not committed yet
                yield path, entry["object_id"]
        if len(entries) < PAGE:
            return
        after = entries[-1]["name"]


def named_objects(store: Store, path: NamedPath) -> Iterator[tuple[str, ObjectInfo]]:
    """(name, object) for the file that `path` names, or every file under the folder it
    names, in name order; NotFound when nothing has that name."""
    node = store.catalog.run(lambda tx: _node(tx, path), write=False)
    if node is None:
        raise NotFound(f"nothing is named {path.text} (no such {'folder' if path.folder else 'name'})")
    if node["kind"] != "dir":
        if path.folder:
            raise NotFound(f"{path.text} is {'an object' if node['kind'] == 'file' else 'no folder'}, not a folder")
        # a symlink or special node holds no object: nothing to list
        found = [("/".join(path.parts), node["object_id"])] if node["object_id"] is not None else []
    else:
        found = _files_under(store, node["id"], "".join(f"{part}/" for part in path.parts))
    batch: list[tuple[str, str]] = []
    for item in found:
        batch.append(item)
        if len(batch) == PAGE:
            yield from _with_objects(store, batch)
            batch = []
    yield from _with_objects(store, batch)


def _with_objects(store: Store, batch: list[tuple[str, str]]) -> Iterator[tuple[str, ObjectInfo]]:
    if not batch:
        return
    ids = sorted({object_id for _, object_id in batch})

    def read(tx: Transaction) -> dict[str, ObjectInfo]:
        placeholders, params = in_list(ids)
        rows = tx.all(f"select * from objects where deleted_at is null and id in ({placeholders})", params)
        found = names.names_of(tx, [row["id"] for row in rows])
        return {row["id"]: ObjectInfo.from_row(row, found[row["id"]]) for row in rows}

    objects = store.catalog.run(read, write=False)
    for name, object_id in batch:
        if object_id in objects:  # else trashed since the walk read its name
            yield name, objects[object_id]
