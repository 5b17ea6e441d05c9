"""The named tree of each bucket, in the catalog: folders and files, each file a reference
to an object. `nodes` are inodes (a file node refers to one object), `entries` are the
directory entries that give nodes their names; a node with two entries is a hardlink.

Every function takes the caller's open transaction, so a name changes atomically with the
object it refers to.
"""

import json
import os
from dataclasses import dataclass

from cas.catalog.base import Row, Transaction
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


def _new_node(tx: Transaction, bucket: str, kind: str, object_id: str | None, mode: int, owner: Owner, now: float,
              xattrs: str = "{}") -> int:
    return tx.value(
        "insert into nodes (bucket, kind, object_id, mode, uid, gid, mtime, ctime, xattrs) "
        "values (:bucket, :kind, :object_id, :mode, :uid, :gid, :now, :now, :xattrs) returning id",
        {"bucket": bucket, "kind": kind, "object_id": object_id, "mode": mode, "uid": owner.uid,
         "gid": owner.gid, "now": now, "xattrs": xattrs},
    )


def lookup(tx: Transaction, parent: int, name: str) -> Row | None:
    return tx.one(
        "select n.* from entries e join nodes n on n.id = e.node_id where e.parent_id = :parent and e.name = :name",
        {"parent": parent, "name": name},
    )


def check_target(tx: Transaction, bucket: str, parts: list[str]) -> None:
    """BadInput when `parts` cannot name a file: a folder on the way is a file, or it is a folder."""
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
        if not is_last and row["kind"] == "file":
            raise BadInput(f"{bucket}/{'/'.join(parts[: depth + 1])} is a file, not a folder")
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
    if row["kind"] != "dir":
        raise BadInput(f"{bucket}: {name!r} is a file, not a folder")
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
            "insert into entries (parent_id, name, node_id) values (:parent, :name, :node)",
            {"parent": parent, "name": parts[-1], "node": node},
        )
        return None
    if existing["kind"] == "dir":
        raise BadInput(f"{bucket}/{'/'.join(parts)} is a folder; give a name for a file")
    tx.execute(
        "update nodes set object_id = :object_id, mtime = :now, ctime = :now where id = :node",
        {"object_id": object_id, "now": now, "node": existing["id"]},
    )
    return existing["object_id"]


def _name_rows(tx: Transaction, object_ids: list[str]) -> list[Row]:
    """(object_id, node_id, path) for every name of the objects; paths exclude the bucket."""
    placeholders = ", ".join(f":id{index}" for index in range(len(object_ids)))
    params = {f"id{index}": object_id for index, object_id in enumerate(object_ids)}
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


def unbind_object(tx: Transaction, object_id: str) -> str:
    """Remove every name of an object; returns them (with owner, mode, xattrs) as JSON for restore."""
    nodes = {row["id"]: row for row in tx.all("select * from nodes where object_id = :id", {"id": object_id})}
    records = [
        {"path": row["path"], "mode": node["mode"], "uid": node["uid"], "gid": node["gid"], "xattrs": node["xattrs"]}
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


def rebind_object(tx: Transaction, bucket: str, object_id: str, trashed_names: str | None, now: float) -> list[str]:
    """Give a restored object back the names it had, where they are still free; returns those."""
    restored = []
    for record in json.loads(trashed_names or "[]"):
        parts = record["path"].split("/")
        try:
            check_target(tx, bucket, parts)
        except BadInput:
            continue  # a folder on the way is a file now
        if _resolve(tx, bucket, parts) is not None:
            continue  # the name now refers to another object
        bind(tx, bucket, parts, object_id, now, Owner(record["uid"], record["gid"]), record["mode"], record["xattrs"])
        restored.append(record["path"])
    return restored
