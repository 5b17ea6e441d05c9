"""Helpers shared by the store tests: looking at the store's files and catalog rows directly.

They read the real filesystem and the real catalog (SQLite or PostgreSQL); nothing here
stands in for either.
"""

import os
import stat
import struct
import zlib
from pathlib import Path

from cas.store import Store

CATALOG_FILES = ("catalog.db", "catalog.db-wal", "catalog.db-shm")
TABLES = ("objects", "blobs", "buckets", "nodes", "entries", "holds")


def small_png() -> bytes:
    """A valid 1x1 RGB PNG (signature, IHDR, IDAT, IEND with correct CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")


SMALL_PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def tmp_entries(store: Store) -> list[str]:
    return sorted(os.listdir(store.root / "tmp"))


def blob_files(root: Path) -> list[Path]:
    return sorted(path for path in (root / "blobs").rglob("*") if path.is_file())


def alias_files(root: Path) -> list[Path]:
    return sorted(path for path in (root / "objects").rglob("*") if path.is_file())


def count(store: Store, table: str, where: str = "", params: dict | None = None) -> int:
    sql = f"select count(*) as n from {table}" + (f" where {where}" if where else "")
    return store.catalog.run(lambda tx: tx.value(sql, params or {}), write=False)


def rows(store: Store, sql: str, params: dict | None = None) -> list[dict]:
    return store.catalog.run(lambda tx: tx.all(sql, params or {}), write=False)


def file_tree(root: Path) -> dict[str, tuple]:
    """Every path under the store except the SQLite files: (kind, size, inode, mode)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            relative = str(path.relative_to(root))
            if relative in CATALOG_FILES:
                continue
            info = path.lstat()
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            size = info.st_size if kind == "file" else None
            found[relative] = (kind, size, info.st_ino, stat.S_IMODE(info.st_mode), info.st_nlink if kind == "file" else None)
    return found


def snapshot(store: Store) -> dict:
    """What 'changes nothing' compares: the files of the store and every catalog table's rows."""
    tables = {
        table: sorted(map(repr, rows(store, f"select * from {table}")))
        for table in TABLES
    }
    return {"files": file_tree(store.root), "tables": tables}
