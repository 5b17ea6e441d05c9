"""The records the store hands out."""

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from cas.catalog.base import Row


@dataclass(frozen=True)
class ObjectInfo:
    id: str
    bucket: str
    hash: str
    size: int
    content_type: str
    filename: str
    metadata: dict[str, str]
    created_at: float
    touched_at: float | None
    deleted_at: float | None
    purge_after: float | None
    expires_at: float | None
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Row, names: list[str] | None = None) -> "ObjectInfo":
        return cls(
            id=row["id"], bucket=row["bucket"], hash=row["hash"], size=row["size"],
            content_type=row["content_type"], filename=row["filename"],
            metadata=json.loads(row["metadata"]), created_at=row["created_at"],
            touched_at=row["touched_at"], deleted_at=row["deleted_at"],
            purge_after=row["purge_after"], expires_at=row["expires_at"],
            names=sorted(names or []),
        )

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The fields `put --json`, `stat --json` and `ls --json` print; times as ISO 8601 UTC."""
        record = asdict(self)
        for key in ("created_at", "touched_at", "deleted_at", "purge_after", "expires_at"):
            record[key] = iso_time(record[key])
        record.update(extra)
        return record


@dataclass(frozen=True)
class PutResult:
    object: ObjectInfo
    deduplicated: bool  # True when an existing live object of the bucket was returned
    name: str | None  # the name in the bucket's tree that now refers to the object
    conflict: bool = False  # a file written through the mount, kept beside its node as a conflict copy
    trashed: bool = False  # a file written through the mount whose node had lost its names: in the trash


def iso_time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
