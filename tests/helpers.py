"""Helpers shared by the store tests: looking at the store's files and catalog rows directly.

They read the real filesystem and the real catalog (SQLite or PostgreSQL); nothing here
stands in for either.
"""

import errno
import os
import secrets
import stat
import struct
import subprocess
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cas.store import Store
from conftest import ASSETFS

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


@contextmanager
def small_tmpfs(path: Path, size: str, mode: str = "0755") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (made here) for one test, unmounted afterwards
    whatever happened (lazily when busy). Skips the test when not root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={mode}", "tmpfs", str(path)], check=True,
                   timeout=30)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], timeout=30).returncode != 0:
            subprocess.run(["umount", "--lazy", str(path)], check=True, timeout=30)


def fill(path: Path) -> Path:
    """Write the file `path` until its filesystem has no byte left; returns it."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as file:
        while True:
            try:
                file.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return path
                chunk = chunk[: len(chunk) // 2]


def allocated_bytes(*roots: Path) -> int:
    """Blocks allocated under `roots`, each inode counted once (as `du` does: a blob and its
    aliases are links of one file)."""
    seen: set[int] = set()
    total = 0
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                status = os.lstat(os.path.join(folder, name))
                if status.st_ino not in seen:
                    seen.add(status.st_ino)
                    total += status.st_blocks * 512
    return total


READER_IN_GROUP = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--groups=54321"]  # see group_store


def group_store(folder: Path) -> Path:
    """A SQLite store made by root in `folder` (every user may enter it) with `init --group
    54321`: the members of that group, as READER_IN_GROUP runs a command, may read it, not write."""
    root = folder / "store"
    subprocess.run([ASSETFS, "--store", str(root), "init", "--group", "54321"], check=True, capture_output=True,
                   timeout=60, preexec_fn=lambda: os.umask(0o022))
    return root


@contextmanager
def read_only_role(store_root: Path, database_url: str) -> Iterator[str]:
    """The store's assetfs.toml names a new PostgreSQL role that may only read the catalog
    (the grants of docs/upgrade.md) for the block; the role is dropped afterwards. Yields its name."""
    import psycopg

    role, password = f"reader_{secrets.token_hex(4)}", secrets.token_hex(8)
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    grants = [f"grant connect on database {info['dbname']} to {role}", f"grant usage on schema assetfs to {role}",
              f"grant select on all tables in schema assetfs to {role}",
              f"grant select on all sequences in schema assetfs to {role}"]  # dump reads nodes_id_seq
    config = store_root / "assetfs.toml"
    original = config.read_text()
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(f"create role {role} login password '{password}'")
        try:
            for grant in grants:
                owner.execute(grant)
            url = psycopg.conninfo.make_conninfo(database_url, user=role, password=password)
            config.write_text(original.replace(f'"{database_url}"', f'"{url}"'))
            assert role in config.read_text()
            yield role
        finally:
            config.write_text(original)
            for grant in reversed(grants):
                owner.execute(grant.replace("grant", "revoke", 1).replace(" to ", " from "))
            owner.execute(f"drop role {role}")

