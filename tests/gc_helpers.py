"""Helpers shared by the collector's tests: configuring a store, and checking it end to end."""

import json
from pathlib import Path

from cas.config import CONFIG_NAME, load_config
from cas.fsck import check_store
from cas.store import Store
from helpers import blob_files, rows


def configure(store_root: Path, toml: str) -> None:
    """Replace the store's assetfs.toml with `toml`, keeping its catalog."""
    url = load_config(store_root).database_url
    head = f"database_url = {json.dumps(url)}\n" if url else ""
    (store_root / CONFIG_NAME).write_text(head + toml)


def assert_consistent(store: Store, orphan_grace: float = 3600.0) -> None:
    """Every live or trashed object has its blob with the right hash, and fsck finds nothing."""
    report = check_store(store, verify_content=True, orphan_grace=orphan_grace)
    assert report.problems == [], [problem.describe() for problem in report.problems]
    used = {row["hash"] for row in rows(store, "select distinct hash from objects")}
    files = {path.name for path in blob_files(store.root)}
    assert used <= files


def unused_blobs(store: Store) -> list[str]:
    """Blob rows or files that no object uses."""
    used = {row["hash"] for row in rows(store, "select distinct hash from objects")}
    stored = {row["hash"] for row in rows(store, "select hash from blobs")}
    return sorted((stored | {path.name for path in blob_files(store.root)}) - used)
