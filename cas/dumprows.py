"""What a row of a dump may carry (`assetfs load`, cas/dump.py): a check for every column.

A dump is input like any other: an edited one must not get past `load` what put, the mount
or the HTTP server refuse. Bucket names, object ids and names are checked by the same rules
(cas/validate.py, cas/ids.py), because paths in the store are built from them: a bucket named
`../../x` would make fsck's repair write alias folders and hard links outside the store.
Hashes are 64 lower-case hex digits, sizes, node ids and counts non-negative integers, kinds
those of cas/nodekinds.py, times finite numbers. A row with a column its table does not have,
or without a column that may not be null, is refused too (docs/backup.md).
"""

import json
import math
import re
from collections.abc import Callable
from typing import Any

from cas import nodekinds
from cas.errors import BadInput
from cas.ids import is_canonical_id
from cas.validate import ID_VIEW_FOLDER, check_bucket, check_filename

HASH = re.compile(r"[0-9a-f]{64}")

Check = Callable[[Any], None]  # raises BadInput saying what is wrong with the value


def _bucket(value: Any) -> None:
    check_bucket(value)


def _object_id(value: Any) -> None:
    if not isinstance(value, str) or not is_canonical_id(value):
        raise BadInput(f"not an object id: {value!r} (expected a lower-case hyphenated UUID)")


def _hash(value: Any) -> None:
    if not isinstance(value, str) or not HASH.fullmatch(value):
        raise BadInput(f"not a content hash: {value!r} (expected 64 lower-case hex digits)")


def _filename(value: Any) -> None:
    _text(value)
    check_filename(value)


def _count(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadInput(f"{value!r} is not a non-negative integer")


def _time(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"{value!r} is not a time (seconds since the epoch)")


def _text(value: Any) -> None:
    if not isinstance(value, str) or "\0" in value:
        raise BadInput(f"{value!r} is not text without NUL bytes")


def _json_object(value: Any) -> None:
    _text(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise BadInput(f"{value[:40]!r} is not a JSON object")


def _kind(value: Any) -> None:
    if value not in nodekinds.FILE_TYPES:
        raise BadInput(f"{value!r} is not a node kind ({', '.join(nodekinds.FILE_TYPES)})")


def _flag(value: Any) -> None:
    if value not in (0, 1) or isinstance(value, bool):
        raise BadInput(f"{value!r} is not 0 or 1")


# table → column → (its check, whether it may be null or left out)
COLUMNS: dict[str, dict[str, tuple[Check, bool]]] = {
    "buckets": {"name": (_bucket, False), "root_node": (_count, False), "created_at": (_time, False)},
    "blobs": {"hash": (_hash, False), "size": (_count, False), "created_at": (_time, False)},
    "objects": {
        "id": (_object_id, False), "bucket": (_bucket, False), "hash": (_hash, False), "size": (_count, False),
        "content_type": (_text, False), "filename": (_filename, False), "metadata": (_json_object, False),
        "created_at": (_time, False), "touched_at": (_time, True), "deleted_at": (_time, True),
        "purge_after": (_time, True), "expires_at": (_time, True), "trashed_names": (_text, True),
    },
    "nodes": {
        "id": (_count, False), "bucket": (_bucket, False), "kind": (_kind, False), "object_id": (_object_id, True),
        "mode": (_count, False), "uid": (_count, False), "gid": (_count, False), "mtime": (_time, False),
        "ctime": (_time, False), "xattrs": (_json_object, False), "version": (_text, True),
        "last_path": (_text, True), "atime": (_time, True), "target": (_text, True), "rdev": (_count, True),
        "subdirs": (_count, False), "mtime_set_at": (_time, True),
    },
    "entries": {"parent_id": (_count, False), "name": (_filename, False), "node_id": (_count, False)},
    "holds": {"object_id": (_object_id, False), "owner": (_text, False), "created_at": (_time, False)},
    "tokens": {
        "id": (_text, False), "secret_hash": (_text, False), "buckets": (_text, False), "can_read": (_flag, False),
        "can_write": (_flag, False), "created_at": (_time, False), "expires_at": (_time, True),
    },
}


class RowChecks:
    """Checks the rows of one dump in its order (buckets first, so the names at a bucket's
    top are known to be there: not an object id nor `.by-id`, as docs/fuse.md asks)."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {table: 0 for table in COLUMNS}
        self.roots: set[int] = set()

    def check(self, line: int, table: str, row: dict[str, Any]) -> None:
        """BadInput naming the line, the table's row number and the field of a bad value."""
        self.numbers[table] += 1
        where = f"line {line} of the dump ({table} row {self.numbers[table]})"
        columns = COLUMNS[table]
        for column, value in row.items():
            if column not in columns:
                raise BadInput(f"{where}: {table} has no column {column!r}; nothing was loaded")
            check, nullable = columns[column]
            if value is None and nullable:
                continue
            try:
                if value is None:
                    raise BadInput("it is missing (null)")
                check(value)
            except BadInput as error:
                raise BadInput(f"{where}, field {column}: {error}; nothing was loaded") from None
        for column, (_, nullable) in columns.items():
            if not nullable and column not in row:
                raise BadInput(f"{where}: field {column} is missing; nothing was loaded")
        if table == "buckets":
            self.roots.add(row["root_node"])
        elif table == "entries" and row["parent_id"] in self.roots:
            name = row["name"]
            if is_canonical_id(name) or name == ID_VIEW_FOLDER:
                raise BadInput(f"{where}, field name: {name!r} at a bucket's top would hide the mount's id "
                               f"folders; nothing was loaded")


def check_node_sequence(value: Any) -> int:
    """The header's highest node id given out: a non-negative integer."""
    try:
        _count(value)
    except BadInput as error:
        raise BadInput(f"the dump's first line: field node_sequence: {error}; nothing was loaded") from None
    return value
