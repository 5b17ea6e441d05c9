"""On a 100% full filesystem the commands that read still work, and `rm`, `trash purge` and
`gc` free space (issue 11, finding 9; cas/reserve.py). With SQLite the catalog is on the full
disk too; with PostgreSQL only the blob tree is.

The store lives on a small tmpfs mounted for the test (root only), always unmounted.
"""

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cas.reserve import free_bytes
from cas.store import Store
from conftest import ASSETFS, run_cli
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


def init_args(root: Path, database_url: str | None) -> list[str]:
    return ["init", *(["--database-url", database_url] if database_url else [])]


def leave_free(disk: Path, room: int) -> Path:
    """Fill the disk, then give `room` bytes back."""
    filler = fill(disk / "filler")
    os.truncate(filler, filler.stat().st_size - room)
    return filler


def one_line(result) -> str:
    text = result.stderr.decode()
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text.strip()


def test_init_on_a_nearly_full_disk_makes_nothing(disk: Path, database_url: str | None) -> None:
    """Refused in one line before anything is made; into an empty folder given, too (issue 8)."""
    filler = leave_free(disk, 100 * 1024)
    given = disk / "given"
    given.mkdir()
    for root in (disk / "store", given):
        line = one_line(run_cli(root, *init_args(root, database_url), check=1))
        assert f"cannot create the store at {root}" in line and "free" in line, line
    assert sorted(os.listdir(disk)) == ["filler", "given"] and os.listdir(given) == []
    filler.unlink()
    run_cli(disk / "store", *init_args(disk / "store", database_url))


def test_init_that_runs_out_of_room_midway_leaves_nothing(disk: Path, database_url: str | None) -> None:
    """The disk fills while init makes the store (paused just after opening the catalog)."""
    root, marker = disk / "store", disk.parent / "init-paused"
    process = subprocess.Popen([ASSETFS, "--store", str(root), *init_args(root, database_url)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "ASSETFS_PAUSE_AT": f"init:catalog@{marker}"})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.01)
        filler = fill(disk / "filler")
        marker.unlink()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1 and err.decode().count("\n") == 1 and "Traceback" not in err.decode(), err
    assert f"cannot create the store at {root}" in err.decode() and "nothing was left behind" in err.decode(), err
    assert os.listdir(disk) == ["filler"]
    filler.unlink()
    run_cli(root, *init_args(root, database_url))
    run_cli(root, "put", "b", "-", input=b"stored")
