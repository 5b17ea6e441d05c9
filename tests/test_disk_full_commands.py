"""On a 100% full filesystem the commands that read still work, and `rm`, `trash purge` and
`gc` free space (issue 11, finding 9; cas/reserve.py). With SQLite the catalog is on the full
disk too; with PostgreSQL only the blob tree is.

The store lives on a small tmpfs mounted for the test (root only), always unmounted.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.reserve import free_bytes
from cas.store import Store
from conftest import run_cli
from helpers import fill, small_tmpfs

DISK_SIZE = "16m"  # the default reserve (8 MiB) and a little content fit


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", DISK_SIZE) as path:
        yield path


def test_commands_on_a_full_disk(disk: Path, database_url: str | None) -> None:
    root = disk / "store"
    Store.init(root, database_url=database_url)[0].close()
    big = os.urandom(1024 * 1024)
    big_id = run_cli(root, "put", "photos", "-", "--name", "big.bin", input=big).stdout.decode().split()[0]
    kept_id = run_cli(root, "put", "photos", "-", "--name", "kept.txt", input=b"kept").stdout.decode().split()[0]
    fill(disk / "filler")
    assert free_bytes(disk) == 0

    listed = run_cli(root, "ls").stdout.decode()
    assert big_id in listed and kept_id in listed
    assert "big.bin" in run_cli(root, "stat", big_id).stdout.decode()
    assert run_cli(root, "cat", big_id).stdout == big
    assert "clean" in run_cli(root, "fsck").stdout.decode()

    run_cli(root, "rm", big_id)
    purged = run_cli(root, "trash", "purge", "--all").stdout.decode()
    assert "1 purged" in purged and "1 swept" in purged
    assert free_bytes(disk) >= len(big)  # the blob's space is free again
    run_cli(root, "gc")
    assert run_cli(root, "cat", kept_id).stdout == b"kept"
    run_cli(root, "put", "photos", "-", "--name", "after.txt", input=b"after the purge")
    assert "clean" in run_cli(root, "fsck").stdout.decode()
