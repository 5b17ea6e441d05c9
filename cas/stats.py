"""`assetfs stats`: objects, blobs and bytes per bucket, and how much dedup saves."""

from typing import Any

from cas.store import Store


def collect_stats(store: Store) -> dict[str, Any]:
    """Counts from the catalog. Logical bytes count every live object; physical bytes count
    each distinct blob once (per bucket: the blobs that bucket's live objects use)."""

    def read(tx):
        live = tx.all(
            "select bucket, count(*) as objects, coalesce(sum(size), 0) as logical_bytes "
            "from objects where deleted_at is null group by bucket"
        )
        physical = tx.all(
            "select bucket, count(*) as blobs, coalesce(sum(size), 0) as physical_bytes from "
            "(select distinct bucket, hash, size from objects where deleted_at is null) as used group by bucket"
        )
        trashed = tx.all("select bucket, count(*) as trashed from objects where deleted_at is not null group by bucket")
        blobs = tx.one("select count(*) as blobs, coalesce(sum(size), 0) as physical_bytes from blobs")
        return live, physical, trashed, blobs

    live, physical, trashed, blobs = store.catalog.run(read, write=False)
    buckets: dict[str, dict[str, Any]] = {
        bucket: {"objects": 0, "blobs": 0, "logical_bytes": 0, "physical_bytes": 0, "trashed_objects": 0}
        for bucket in store.buckets()
    }
    for row in live:
        buckets[row["bucket"]].update(objects=row["objects"], logical_bytes=int(row["logical_bytes"]))
    for row in physical:
        buckets[row["bucket"]].update(blobs=row["blobs"], physical_bytes=int(row["physical_bytes"]))
    for row in trashed:
        buckets[row["bucket"]]["trashed_objects"] = row["trashed"]
    for numbers in buckets.values():
        numbers["dedup_ratio"] = _ratio(numbers["logical_bytes"], numbers["physical_bytes"])
    logical = sum(numbers["logical_bytes"] for numbers in buckets.values())
    total = {
        "objects": sum(numbers["objects"] for numbers in buckets.values()),
        "trashed_objects": sum(numbers["trashed_objects"] for numbers in buckets.values()),
        "blobs": blobs["blobs"],
        "logical_bytes": logical,
        "physical_bytes": int(blobs["physical_bytes"]),
        "dedup_ratio": _ratio(logical, int(blobs["physical_bytes"])),
    }
    return {"catalog": store.catalog.describe(), "buckets": buckets, "total": total}


def _ratio(logical: int, physical: int) -> float:
    return round(logical / physical, 3) if physical else 1.0
