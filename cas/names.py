"""The named tree of each bucket, in the catalog: folders and files, each file a reference
to an object. `nodes` are inodes (a file node refers to one object), `entries` are the
directory entries that give nodes their names; a node with two entries is a hardlink.

Every function takes the caller's open transaction, so a name changes atomically with the
object it refers to.
"""

import errno
import json
import os
import time
import uuid
from dataclasses import dataclass

from cas import nodekinds
from cas.catalog.base import Row, Transaction, in_list
from cas.errors import BadInput

DIR_MODE = 0o755
FILE_MODE = 0o644


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int

    @classmethod
    def current(cls) -> "Owner":
        return cls(os.getuid(), os.getgid())


def bucket_root(tx: Transaction, bucket: str) -> int | None:
    return tx.value("select root_node from buckets where name = :bucket", {"bucket": bucket})


def ensure_bucket(tx: Transaction, bucket: str, now: float, owner: Owner) -> int:
    """The bucket's root node id, creating the bucket row and its root folder when missing."""
    root = bucket_root(tx, bucket)
    if root is not None:
        return root
    node = _new_node(tx, bucket, "dir", None, DIR_MODE, owner, now)
    tx.execute(
        "insert into buckets (name, root_node, created_at) values (:bucket, :node, :now) on conflict (name) do nothing",
        {"bucket": bucket, "node": node, "now": now},
    )
    root = bucket_root(tx, bucket)
    if root != node:  # another transaction created the bucket first
        tx.execute("delete from nodes where id = :node", {"node": node})
    return root


def new_version() -> str:
    """A file node's content version (`nodes.version`) for a change that is not a mount's
    commit (whose versions name its journal entries): unique, never reused."""
    return uuid.uuid4().hex


def _new_node(tx: Transaction, bucket: str, kind: str, object_id: str | None, mode: int, owner: Owner, now: float,
              xattrs: str = "{}", target: str | None = None, rdev: int | None = None) -> int:
    return tx.value(
        "insert into nodes (bucket, kind, object_id, mode, uid, gid, atime, mtime, ctime, xattrs, version, target, rdev) "
        "values (:bucket, :kind, :object_id, :mode, :uid, :gid, :now, :now, :now, :xattrs, :version, :target, :rdev) "
        "returning id",
        {"bucket": bucket, "kind": kind, "object_id": object_id, "mode": mode, "uid": owner.uid,
         "gid": owner.gid, "now": now, "xattrs": xattrs, "version": None if object_id is None else new_version(),
         "target": target, "rdev": rdev},
    )


def lookup(tx: Transaction, parent: int, name: str) -> Row | None:
    return tx.one(
        "select n.* from entries e join nodes n on n.id = e.node_id where e.parent_id = :parent and e.name = :name",
        {"parent": parent, "name": name},
    )


def check_target(tx: Transaction, bucket: str, parts: list[str]) -> None:
    """BadInput when `parts` cannot name a file: a folder on the way is not a folder, or the
    name is a folder, a symbolic link or another node without content."""
    node = bucket_root(tx, bucket)
    for depth, part in enumerate(parts):
        if node is None:
            return
        row = lookup(tx, node, part)
        if row is None:
            return
        is_last = depth == len(parts) - 1
        if is_last and row["kind"] == "dir":
            raise BadInput(f"{bucket}/{'/'.join(parts)} is a folder; give a name for a file")
        if is_last and row["kind"] != nodekinds.FILE:
            raise BadInput(f"{bucket}/{'/'.join(parts)} is a {nodekinds.describe(row['kind'])}, not a file")
        if not is_last and row["kind"] != "dir":
            raise BadInput(f"{bucket}/{'/'.join(parts[: depth + 1])} is a {nodekinds.describe(row['kind'])}, not a folder")
        node = row["id"]


def _ensure_dir(tx: Transaction, bucket: str, parent: int, name: str, now: float, owner: Owner) -> int:
    row = lookup(tx, parent, name)
    if row is None:
        node = _new_node(tx, bucket, "dir", None, DIR_MODE, owner, now)
        tx.execute(
            "insert into entries (parent_id, name, node_id) values (:parent, :name, :node) on conflict do nothing",
            {"parent": parent, "name": name, "node": node},
        )
        row = lookup(tx, parent, name)
        if row["id"] != node:  # created concurrently
            tx.execute("delete from nodes where id = :node", {"node": node})
        else:
            _count_subdir(tx, parent, 1)
    if row["kind"] != "dir":
        raise BadInput(f"{bucket}: {name!r} is a {nodekinds.describe(row['kind'])}, not a folder")
    return row["id"]


def bind(tx: Transaction, bucket: str, parts: list[str], object_id: str, now: float, owner: Owner,
         mode: int = FILE_MODE, xattrs: str = "{}") -> str | None:
    """Make `<bucket>/<parts…>` refer to `object_id`, creating folders on the way.

    An existing file keeps its node (inode, owner, mode) and now refers to the new object.
    Returns the id of the object the name referred to before, if any.
    """
    parent = ensure_bucket(tx, bucket, now, owner)
    for part in parts[:-1]:
        parent = _ensure_dir(tx, bucket, parent, part, now, owner)
    existing = lookup(tx, parent, parts[-1])
    if existing is None:
        node = _new_node(tx, bucket, "file", object_id, mode, owner, now, xattrs)
        tx.execute(
            "insert into entries (parent_id, name, node_id) values (:parent, :name, :node) on conflict do nothing",
            {"parent": parent, "name": parts[-1], "node": node},
        )
        existing = lookup(tx, parent, parts[-1])
        if existing["id"] == node:
            return None
        tx.execute("delete from nodes where id = :node", {"node": node})  # a concurrent bind created the name first
    if existing["kind"] == "dir":
        raise BadInput(f"{bucket}/{'/'.join(parts)} is a folder; give a name for a file")
    if existing["kind"] != nodekinds.FILE:  # a symlink or special node holds no object
        raise BadInput(f"{bucket}/{'/'.join(parts)} is a {nodekinds.describe(existing['kind'])}, not a file")
    # Lock the node's row first (PostgreSQL waits here for a concurrent bind to commit), then read
    # which object it refers to: the object returned as replaced is the one this bind replaces.
    tx.execute("update nodes set mtime = :now, ctime = :now where id = :node", {"now": now, "node": existing["id"]})
    replaced = tx.value("select object_id from nodes where id = :node", {"node": existing["id"]})
    tx.execute("update nodes set object_id = :object_id, version = :version where id = :node",
               {"object_id": object_id, "version": new_version(), "node": existing["id"]})
    if replaced is not None and replaced != object_id:
        _let_go(tx, replaced, [_name_record(tx, existing["id"], "/".join(parts))], now)
    return replaced


def _name_rows(tx: Transaction, object_ids: list[str]) -> list[Row]:
    """(object_id, node_id, path) for every name of the objects; paths exclude the bucket."""
    placeholders, params = in_list(object_ids)
    return tx.all(
        f"""with recursive up (object_id, node_id, path, parent_id) as (
                select n.object_id, n.id, e.name, e.parent_id
                from nodes n join entries e on e.node_id = n.id
                where n.object_id in ({placeholders})
              union all
                select up.object_id, up.node_id, e.name || '/' || up.path, e.parent_id
                from up join entries e on e.node_id = up.parent_id
            )
            select up.object_id, up.node_id, up.path from up join buckets b on b.root_node = up.parent_id""",
        params,
    )


def names_of(tx: Transaction, object_ids: list[str]) -> dict[str, list[str]]:
    """Every path (`folder/file`, without the bucket) that refers to each of the objects."""
    found: dict[str, list[str]] = {object_id: [] for object_id in object_ids}
    if object_ids:
        for row in _name_rows(tx, object_ids):
            found[row["object_id"]].append(row["path"])
    return found


def access_of_object(tx: Transaction, object_id: str, trashed: bool) -> list[tuple[int, int, int]]:
    """(mode, uid, gid) of each file node that refers to the object; for an object in the trash,
    of each name it had (recorded by `unbind_object`). The mount's id view follows them."""
    if trashed:
        records = json.loads(tx.value("select trashed_names from objects where id = :id", {"id": object_id}) or "[]")
    else:
        records = tx.all("select mode, uid, gid from nodes where object_id = :id", {"id": object_id})
    return [(record["mode"], record["uid"], record["gid"]) for record in records]


def unbind_object(tx: Transaction, object_id: str) -> str:
    """Remove every name of an object; returns them (with owner, mode, xattrs) as JSON for restore."""
    nodes = {row["id"]: row for row in tx.all("select * from nodes where object_id = :id", {"id": object_id})}
    if not nodes:
        return "[]"  # most objects the collector purges have no name: skip the path query
    records = [
        name_record(node, row["path"])
        for row in _name_rows(tx, [object_id])
        for node in [nodes[row["node_id"]]]
    ]
    for node in nodes:
        tx.execute("delete from entries where node_id = :node", {"node": node})
        tx.execute("delete from nodes where id = :node", {"node": node})
    return json.dumps(records)


def _resolve(tx: Transaction, bucket: str, parts: list[str]) -> Row | None:
    node: Row | None = {"id": bucket_root(tx, bucket)}
    for part in parts:
        if node is None or node["id"] is None:
            return None
        node = lookup(tx, node["id"], part)
    return node


def restorable_names(tx: Transaction, bucket: str, trashed_names: str | None) -> list[dict]:
    """The records of `objects.trashed_names` whose paths are still free: the names a restore
    would give back now (`trash ls` shows them)."""
    free = []
    for record in json.loads(trashed_names or "[]"):
        parts = record["path"].split("/")
        try:
            check_target(tx, bucket, parts)
        except BadInput:
            continue  # a folder on the way is a file now
        if _resolve(tx, bucket, parts) is not None:
            continue  # the name now refers to another object
        free.append(record)
    return free


def rebind_object(tx: Transaction, bucket: str, object_id: str, trashed_names: str | None, now: float) -> list[str]:
    """Give a restored object back the names it had, where they are still free; returns those."""
    restored = []
    for record in restorable_names(tx, bucket, trashed_names):
        parts = record["path"].split("/")
        bind(tx, bucket, parts, object_id, now, Owner(record["uid"], record["gid"]), record["mode"], record["xattrs"])
        restored.append(record["path"])
    return restored


# The tree as the FUSE view changes it ------------------------------------------------------
#
# A file node whose `object_id` is NULL is a file created through the mount whose first
# content is not committed yet (it reads as empty). A node that lost its last entry while the
# mount's kernel still knew its inode is kept, with `object_id` NULL, until the kernel forgets
# it, so its number is not handed out again meanwhile; `drop_unlinked_nodes` removes leftovers.
#
# `nodes.xattrs` is a JSON object: full attribute name ("user.colour") → the value as a string
# when it is UTF-8, or {"base64": "..."} when it is not.


class TreeError(BadInput):
    """A change the named tree's shape forbids; `errno` is the matching POSIX error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


# A node's attributes as the mount shows them: its row, its object's size and hash, its
# names (`nlink`), and for a folder its subfolders (`nodes.subdirs`) and whether it is a
# bucket's top folder (a folder's st_nlink is 2 + its subfolders while it has a name or is a
# top folder).
_ATTR_COLUMNS = (
    "n.id, n.bucket, n.kind, n.object_id, n.mode, n.uid, n.gid, n.atime, n.mtime, n.ctime, n.xattrs, "
    "n.version, n.target, n.rdev, n.subdirs, o.size, o.hash, "
    "(select count(*) from entries c where c.node_id = n.id) as nlink, "
    "case when n.kind = 'dir' then (select count(*) from buckets b where b.root_node = n.id) else 0 end as roots"
)


def _node_query(where: str) -> str:
    return (f"select {_ATTR_COLUMNS}, n.last_path, n.mtime_set_at "
            f"from nodes n left join objects o on o.id = n.object_id where {where}")


def node_attrs(tx: Transaction, node: int) -> Row | None:
    """A node with its object's size and hash, its link count (`nlink`, names only) and, for
    a folder, its subfolders (`subdirs`) and whether it is a bucket's top (`roots`)."""
    return tx.one(_node_query("n.id = :node"), {"node": node})


def lookup_attrs(tx: Transaction, parent: int, name: str) -> Row | None:
    """Like `node_attrs`, for the node that `name` in folder `parent` refers to."""
    return tx.one(
        _node_query("n.id = (select node_id from entries where parent_id = :parent and name = :name)"),
        {"parent": parent, "name": name},
    )


def list_entries(tx: Transaction, parent: int, after: str, limit: int) -> list[Row]:
    """Up to `limit` entries of folder `parent` whose names sort after `after`, in name order,
    each with its node's attributes (as `node_attrs`) and its `name`."""
    return tx.all(
        f"select e.name, {_ATTR_COLUMNS} "
        "from entries e join nodes n on n.id = e.node_id left join objects o on o.id = n.object_id "
        "where e.parent_id = :parent and e.name > :after order by e.name limit :limit",
        {"parent": parent, "after": after, "limit": limit},
    )


def touch_object(tx: Transaction, object_id: str | None, now: float) -> None:
    """Dropping a reference touches the object, so GC checks whether anything else uses it."""
    if object_id is not None:
        tx.execute("update objects set touched_at = :now where id = :id and deleted_at is null",
                   {"now": now, "id": object_id})


def _folder(tx: Transaction, node: int) -> Row:
    row = tx.one("select id, kind, bucket from nodes where id = :node", {"node": node})
    if row is None:
        raise TreeError(errno.ENOENT, "the folder no longer exists")
    if row["kind"] != "dir":
        raise TreeError(errno.ENOTDIR, "not a folder")
    return row


def create_node(tx: Transaction, parent: int, name: str, kind: str, mode: int, owner: Owner, now: float,
                target: str | None = None, rdev: int | None = None) -> int:
    """A new node called `name` in folder `parent`: a file (without content yet), a folder, a
    symbolic link to `target`, or a FIFO, socket or device (`rdev`) (cas/nodekinds.py)."""
    folder = _folder(tx, parent)
    if lookup(tx, parent, name) is not None:
        raise TreeError(errno.EEXIST, f"{name!r} exists")
    node = _new_node(tx, folder["bucket"], kind, None, mode, owner, now, target=target, rdev=rdev)
    tx.execute("insert into entries (parent_id, name, node_id) values (:parent, :name, :node)",
               {"parent": parent, "name": name, "node": node})
    _changed(tx, parent, now)
    if kind == nodekinds.DIR:
        _count_subdir(tx, parent, 1)
    return node


def _count_subdir(tx: Transaction, folder: int, delta: int) -> None:
    """A subfolder came into (1) or left (-1) `folder`: `nodes.subdirs`, kept in the
    transaction that changes the entries (the folder's row is locked by that change anyway)."""
    tx.execute("update nodes set subdirs = subdirs + :delta where id = :node", {"delta": delta, "node": folder})


def _changed(tx: Transaction, folder: int, now: float) -> None:
    tx.execute("update nodes set mtime = :now, ctime = :now where id = :node", {"now": now, "node": folder})


def _drop_entry(tx: Transaction, parent: int, name: str, node: int, now: float) -> bool:
    """Remove one entry; True when its node has no name left: its object lets go of the node
    (`_let_go`), and the node keeps the path it had (`last_path`) for a version of its
    content committed later (which then goes to the trash under that name)."""
    last = tx.value("select count(*) as n from entries where node_id = :node", {"node": node}) == 1
    path = _entry_path(tx, parent, name) if last else None
    tx.execute("delete from entries where parent_id = :parent and name = :name", {"parent": parent, "name": name})
    _changed(tx, parent, now)
    if tx.value("select kind from nodes where id = :node", {"node": node}) == nodekinds.DIR:
        _count_subdir(tx, parent, -1)
    if not last:
        tx.execute("update nodes set ctime = :now where id = :node", {"now": now, "node": node})
        return False
    object_id = tx.value("select object_id from nodes where id = :node", {"node": node})
    tx.execute("update nodes set object_id = null, last_path = :path, ctime = :now where id = :node",
               {"path": path, "now": now, "node": node})
    if object_id is not None and path is not None:
        _let_go(tx, object_id, [_name_record(tx, node, path)], now)
    return True


def _entry_path(tx: Transaction, parent: int, name: str) -> str | None:
    """The path (without the bucket) of entry `name` in folder `parent`."""
    folder = node_path(tx, parent)
    if folder is None:
        return None
    return f"{folder}/{name}" if folder else name


def name_record(node: Row, path: str) -> dict:
    """A name (`path`, of the node `node`) as the trash keeps it for restore (`objects.trashed_names`)."""
    return {"path": path, "mode": node["mode"], "uid": node["uid"], "gid": node["gid"], "xattrs": node["xattrs"]}


def _name_record(tx: Transaction, node: int, path: str) -> dict:
    return name_record(tx.one("select mode, uid, gid, xattrs from nodes where id = :node", {"node": node}), path)


LET_GO = 0.0  # `objects.touched_at` of an object that lost its last name: check it at once


def _let_go(tx: Transaction, object_id: str, records: list[dict], now: float) -> None:
    """An object lost a name: touch it (a reference was dropped). When no name is left, remember
    the names it had (for restore from the trash), mark it for a check now rather than after
    the collector's `min_age` (`touched_at` = LET_GO: whoever runs next checks it, should the
    view that made the change die first) and report it (`Transaction.released`), so the view
    checks it within seconds."""
    touch_object(tx, object_id, now)
    if tx.one("select 1 as found from nodes where object_id = :id limit 1", {"id": object_id}) is not None:
        return
    tx.execute("update objects set touched_at = :let_go, trashed_names = coalesce(:names, trashed_names) "
               "where id = :id and deleted_at is null",
               {"let_go": LET_GO, "names": json.dumps(records) if records else None, "id": object_id})
    tx.released().add(object_id)


def unlink(tx: Transaction, parent: int, name: str, now: float) -> tuple[int, bool]:
    """Remove the file name `name`; returns (node, whether that was its last name)."""
    row = lookup(tx, parent, name)
    if row is None:
        raise TreeError(errno.ENOENT, f"no {name!r}")
    if row["kind"] == "dir":
        raise TreeError(errno.EISDIR, f"{name!r} is a folder")
    return row["id"], _drop_entry(tx, parent, name, row["id"], now)


def _is_empty(tx: Transaction, node: int) -> bool:
    return tx.one("select 1 as found from entries where parent_id = :node limit 1", {"node": node}) is None


def remove_dir(tx: Transaction, parent: int, name: str, now: float) -> int:
    """Remove the empty folder `name`; returns its node (now without a name)."""
    row = lookup(tx, parent, name)
    if row is None:
        raise TreeError(errno.ENOENT, f"no {name!r}")
    if row["kind"] != "dir":
        raise TreeError(errno.ENOTDIR, f"{name!r} is not a folder")
    if not _is_empty(tx, row["id"]):
        raise TreeError(errno.ENOTEMPTY, f"{name!r} is not empty")
    _drop_entry(tx, parent, name, row["id"], now)
    return row["id"]


def delete_node(tx: Transaction, node: int) -> None:
    """Delete a node that has no name left (and is no bucket's root)."""
    tx.execute(
        "delete from nodes where id = :node and not exists (select 1 from entries where node_id = :node) "
        "and not exists (select 1 from entries where parent_id = :node) "
        "and not exists (select 1 from buckets where root_node = :node)",
        {"node": node},
    )


def drop_unlinked_nodes(tx: Transaction, now: float) -> int:
    """Delete every node without a name that is no bucket's root and that no mount keeps
    (`mount_nodes`: a live mount's open file; a dead mount's are deleted when it is
    recovered, cas/mounts.py)."""
    rows = tx.all(
        "select id from nodes n where not exists (select 1 from entries e where e.node_id = n.id) "
        "and not exists (select 1 from buckets b where b.root_node = n.id) "
        "and not exists (select 1 from mount_nodes m where m.node_id = n.id)"
    )
    for row in rows:
        touch_object(tx, tx.value("select object_id from nodes where id = :node", {"node": row["id"]}), now)
        delete_node(tx, row["id"])
    return len(rows)


def _is_inside(tx: Transaction, node: int, folder: int) -> bool:
    """Whether folder `folder` is `node` or lies inside it."""
    current: int | None = folder
    while current is not None:
        if current == node:
            return True
        current = tx.value("select parent_id from entries where node_id = :node limit 1", {"node": current})
    return False


def rename(tx: Transaction, old_parent: int, old_name: str, new_parent: int, new_name: str, now: float,
           replace: bool = True) -> int | None:
    """Move the entry `old_name` to `new_name` (both folders in one bucket), replacing what is
    there as rename(2) does. Returns the replaced node when that lost its last name."""
    moved = lookup(tx, old_parent, old_name)
    if moved is None:
        raise TreeError(errno.ENOENT, f"no {old_name!r}")
    _folder(tx, new_parent)
    target = lookup(tx, new_parent, new_name)
    if target is not None and target["id"] == moved["id"]:
        return None  # two names of one file: rename(2) does nothing
    if moved["kind"] == "dir" and _is_inside(tx, moved["id"], new_parent):
        raise TreeError(errno.EINVAL, "cannot move a folder into itself")
    orphan = None
    if target is not None:
        if not replace:
            raise TreeError(errno.EEXIST, f"{new_name!r} exists")
        if moved["kind"] == "dir" and target["kind"] != "dir":
            raise TreeError(errno.ENOTDIR, f"{new_name!r} is not a folder")
        if moved["kind"] != "dir" and target["kind"] == "dir":
            raise TreeError(errno.EISDIR, f"{new_name!r} is a folder")
        if target["kind"] == "dir" and not _is_empty(tx, target["id"]):
            raise TreeError(errno.ENOTEMPTY, f"{new_name!r} is not empty")
        if _drop_entry(tx, new_parent, new_name, target["id"], now):
            orphan = target["id"]
    tx.execute(
        "update entries set parent_id = :new_parent, name = :new_name where parent_id = :old_parent and name = :old_name",
        {"new_parent": new_parent, "new_name": new_name, "old_parent": old_parent, "old_name": old_name},
    )
    _changed(tx, old_parent, now)
    _changed(tx, new_parent, now)
    if moved["kind"] == nodekinds.DIR and old_parent != new_parent:
        _count_subdir(tx, old_parent, -1)
        _count_subdir(tx, new_parent, 1)
    tx.execute("update nodes set ctime = :now where id = :node", {"now": now, "node": moved["id"]})
    return orphan


def link(tx: Transaction, node: int, parent: int, name: str, now: float) -> None:
    """Give file `node` another name (a hardlink)."""
    row = tx.one("select kind from nodes where id = :node", {"node": node})
    if row is None:
        raise TreeError(errno.ENOENT, "the file no longer exists")
    if row["kind"] == "dir":  # any other kind (a symlink, a FIFO) may have several names
        raise TreeError(errno.EPERM, "folders cannot have hard links")
    _folder(tx, parent)
    if lookup(tx, parent, name) is not None:
        raise TreeError(errno.EEXIST, f"{name!r} exists")
    tx.execute("insert into entries (parent_id, name, node_id) values (:parent, :name, :node)",
               {"parent": parent, "name": name, "node": node})
    tx.execute("update nodes set ctime = :now where id = :node", {"now": now, "node": node})
    _changed(tx, parent, now)


NODE_FIELDS = ("mode", "uid", "gid", "atime", "mtime", "ctime", "xattrs", "mtime_set_at")


def update_node(tx: Transaction, node: int, **fields: object) -> None:
    """Set some of mode, uid, gid, atime, mtime, ctime, xattrs (JSON text) of a node; an mtime
    set here is an explicit one (utimens): `mtime_set_at` records when, unless given."""
    if "mtime" in fields and "mtime_set_at" not in fields:
        fields["mtime_set_at"] = time.time()
    unknown = set(fields) - set(NODE_FIELDS)
    if unknown:
        raise ValueError(f"not node fields: {sorted(unknown)}")
    if fields:
        assignments = ", ".join(f"{field} = :{field}" for field in fields)
        tx.execute(f"update nodes set {assignments} where id = :node", {**fields, "node": node})


def rebind_node(tx: Transaction, node: int, object_id: str, mtime: float, now: float, version: str) -> None:
    """Make file `node` refer to `object_id` (its content was rewritten through the mount) at
    content version `version`. The object it referred to before lets go of this name.

    The change time is the content's, not the commit's: the node's ctime moves to `mtime`
    (when its content last changed) if that is later, never past `now`. A file closed with
    nothing written keeps its ctime when its commit lands (docs/fuse.md, "Symlinks, special
    files and times")."""
    row = tx.one("select object_id, ctime from nodes where id = :node", {"node": node})
    ctime = now if row is None else max(row["ctime"], min(mtime, now))
    tx.execute("update nodes set object_id = :object_id, version = :version, mtime = :mtime, ctime = :ctime "
               "where id = :node",
               {"object_id": object_id, "version": version, "mtime": mtime, "ctime": ctime, "node": node})
    if row is not None and row["object_id"] is not None and row["object_id"] != object_id:
        path = node_path(tx, node)
        _let_go(tx, row["object_id"], [] if path is None else [_name_record(tx, node, path)], now)


MAX_NAME_BYTES = 255


def conflict_name(name: str, now: float, copy: int = 1) -> str:
    """The name of a conflict copy of `name`: `photo (conflict 2026-11-29 17.02).png` (local
    time; ` 2`, ` 3`… after the minute for further copies), within the 255-byte limit."""
    stem, dot, extension = name.rpartition(".")
    if not stem or not dot:  # no extension, or a dot file such as `.profile`
        stem, extension = name, ""
    else:
        extension = "." + extension
    tag = f" (conflict {time.strftime('%Y-%m-%d %H.%M', time.localtime(now))}{'' if copy == 1 else f' {copy}'})"
    room = MAX_NAME_BYTES - len((tag + extension).encode())
    if room < 1:  # an extension too long to keep
        extension, room = "", MAX_NAME_BYTES - len(tag.encode())
    stem = stem.encode()[:room].decode(errors="ignore")
    return stem + tag + extension


def bind_conflict_copy(tx: Transaction, node: int, object_id: str, filename: str, mtime: float, now: float) -> str:
    """A new file beside `node` (in the folder of its first name) that refers to `object_id`,
    with the node's mode, owner and xattrs, named `filename` (a `conflict_name`) or the next
    free `conflict_name`. Returns its path without the bucket."""
    row = tx.one("select * from nodes where id = :node", {"node": node})
    entry = tx.one("select parent_id, name from entries where node_id = :node order by parent_id, name limit 1",
                   {"node": node})
    name, copy = filename, 1
    while lookup(tx, entry["parent_id"], name) is not None:
        copy += 1
        name = conflict_name(entry["name"], now, copy)
    copy_node = _new_node(tx, row["bucket"], "file", object_id, row["mode"], Owner(row["uid"], row["gid"]), now,
                          row["xattrs"])
    tx.execute("update nodes set mtime = :mtime where id = :node", {"mtime": mtime, "node": copy_node})
    tx.execute("insert into entries (parent_id, name, node_id) values (:parent, :name, :node)",
               {"parent": entry["parent_id"], "name": name, "node": copy_node})
    _changed(tx, entry["parent_id"], now)
    folder = node_path(tx, entry["parent_id"])
    return f"{folder}/{name}" if folder else name


def node_path(tx: Transaction, node: int) -> str | None:
    """The node's path without the bucket (through its first name at each level; "" for a
    bucket's top folder); None when it has no name."""
    parts: list[str] = []
    current = node
    while tx.one("select 1 as found from buckets where root_node = :node", {"node": current}) is None:
        entry = tx.one("select parent_id, name from entries where node_id = :node order by parent_id, name limit 1",
                       {"node": current})
        if entry is None:
            return None
        parts.append(entry["name"])
        current = entry["parent_id"]
    return "/".join(reversed(parts))


def entries_of_object(tx: Transaction, object_id: str) -> list[Row]:
    """The entries (`parent_id`, `name`) of every name that refers to the object."""
    return tx.all("select e.parent_id, e.name from entries e join nodes n on n.id = e.node_id "
                  "where n.object_id = :id order by e.parent_id, e.name", {"id": object_id})


def node_name(tx: Transaction, node: int) -> str | None:
    """One of the node's names (the first in name order), or None when it has none left."""
    return tx.value("select name from entries where node_id = :node order by name limit 1", {"node": node})


def create_bucket(tx: Transaction, bucket: str, now: float, owner: Owner) -> int:
    """A new bucket's root node; TreeError(EEXIST) when the bucket has a row already."""
    if bucket_root(tx, bucket) is not None:
        raise TreeError(errno.EEXIST, f"bucket {bucket!r} exists")
    return ensure_bucket(tx, bucket, now, owner)


def remove_bucket(tx: Transaction, bucket: str) -> None:
    """Remove an empty bucket: no names and no objects (live or in the trash)."""
    root = bucket_root(tx, bucket)
    if root is None:
        raise TreeError(errno.ENOENT, f"no bucket {bucket!r}")
    if not _is_empty(tx, root) or tx.one("select 1 as found from objects where bucket = :bucket limit 1",
                                         {"bucket": bucket}) is not None:
        raise TreeError(errno.ENOTEMPTY, f"bucket {bucket!r} is not empty")
    tx.execute("delete from buckets where name = :bucket", {"bucket": bucket})
    tx.execute("delete from nodes where id = :node", {"node": root})
