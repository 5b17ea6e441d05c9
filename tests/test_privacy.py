"""A store is closed to other local users (issue 11, findings 12 and 13; docs/security.md):
created 0700/0600 whatever the umask, or readable by one group given at `init`; the write
lock's files are the owner's alone, and a writer waiting for the write lock gives up after
`write_lock_timeout` with a one-line error and exit code 75.

Another user is `nobody`, run with setpriv (root only). The stores live in a folder every
user may enter, as a store in a home folder or /srv would: only the store's own modes keep
strangers out.
"""

import errno
import fcntl
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

import mounting

from cas.config import load_config
from cas.store import Store
from conftest import ASSETFS, run_cli
from gc_helpers import configure
from helpers import count

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
FREE_GID = 54321  # no group has it: `init --group` takes a number too


def init(root: Path, database_url: str | None, *args: str) -> None:
    """`assetfs init` under the default umask 022."""
    url = ["--database-url", database_url] if database_url else []
    subprocess.run([ASSETFS, "--store", str(root), "init", *url, *args], check=True, capture_output=True,
                   timeout=60, preexec_fn=lambda: os.umask(0o022))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_nobody(*command: str, groups: str | None = None) -> subprocess.CompletedProcess:
    user = NOBODY if groups is None else [*NOBODY[:-1], f"--groups={groups}"]
    return subprocess.run([*user, *command], capture_output=True, timeout=30)


def test_a_new_store_is_its_owners_alone(open_folder: Path, database_url: str | None) -> None:
    root = open_folder / "store"
    init(root, database_url)
    run_cli(root, "put", "photos", "-", "--name", "a.txt", input=b"private content")

    assert mode(root) == 0o700
    for folder in ("blobs", "objects", "tmp"):
        assert mode(root / folder) == 0o700, folder
    files = ["assetfs.toml"] + ([] if database_url else ["catalog.db", "catalog.db-writer", "catalog.db-waiting"])
    for name in files:
        assert mode(root / name) == 0o600, name
    if not database_url:
        with Store.open(root) as store:  # SQLite's own files exist while the catalog is open
            assert len(list(store.list())) == 1
            for name in ("catalog.db-wal", "catalog.db-shm"):
                assert mode(root / name) == 0o600, name
    for name in ["", *files]:
        assert as_nobody("cat", str(root / name)).returncode != 0, name
    assert as_nobody("ls", str(root)).returncode != 0


def test_a_store_shared_with_a_group(open_folder: Path, database_url: str | None) -> None:
    root = open_folder / "store"
    init(root, database_url, "--group", str(FREE_GID))
    object_id = run_cli(root, "put", "photos", "-", input=b"shared content").stdout.decode().split()[0]

    assert mode(root) == 0o2750 and root.stat().st_gid == FREE_GID
    assert mode(root / "assetfs.toml") == 0o640 and (root / "assetfs.toml").stat().st_gid == FREE_GID
    if not database_url:
        assert mode(root / "catalog.db") == 0o640 and mode(root / "catalog.db-writer") == 0o600
    alias = next((root / "objects" / "photos").glob(f"*/*/{object_id}/*"))
    member = as_nobody("cat", str(alias), groups=str(FREE_GID))
    assert member.returncode == 0 and member.stdout == b"shared content"
    assert as_nobody("cat", str(alias)).returncode != 0  # not a member
    assert as_nobody("cat", str(root / "assetfs.toml")).returncode != 0
    init(root, database_url, "--group", str(FREE_GID))  # idempotent
    refused = run_cli(root, "init", "--group", "0", check=2)
    assert "not shared with group 0" in refused.stderr.decode()


def test_an_unknown_group_is_refused(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "store", "init", "--group", "no-such-group-here", check=2)
    assert result.stderr.decode().count("\n") == 1 and "no such group" in result.stderr.decode()
    assert not (tmp_path / "store").exists()


def test_the_log_of_a_mount_is_private(open_folder: Path) -> None:
    root, mountpoint = open_folder / "store", open_folder / "mnt"
    init(root, None)
    mountpoint.mkdir()
    subprocess.run([ASSETFS, "--store", str(root), "mount", str(mountpoint)], check=True, capture_output=True,
                   timeout=60, preexec_fn=lambda: os.umask(0o022))
    try:
        assert mode(root / "mount.log") == 0o600
    finally:
        subprocess.run([ASSETFS, "umount", str(mountpoint)], check=True, capture_output=True, timeout=60)


def test_the_password_can_come_from_a_passfile(tmp_path: Path, database_url: str | None) -> None:
    """libpq's PGPASSFILE (or PGPASSWORD): the configuration need not hold the password."""
    if database_url is None:
        pytest.skip("a SQLite catalog has no password")
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    password = info.pop("password")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{info['host']}:{info.get('port', 5432)}:{info['dbname']}:{info['user']}:{password}\n")
    passfile.chmod(0o600)
    url = psycopg.conninfo.make_conninfo(**info)
    root = tmp_path / "store"
    run_cli(root, "init", "--database-url", url, env={"PGPASSFILE": str(passfile)})
    assert "password" not in psycopg.conninfo.conninfo_to_dict(load_config(root).database_url)
    run_cli(root, "put", "photos", "-", input=b"content", env={"PGPASSFILE": str(passfile)})
    without = run_cli(root, "ls", check=1, env={"PGPASSFILE": str(tmp_path / "none")})
    assert without.stderr.decode().count("\n") == 1, without.stderr


# the write lock (SQLite) -----------------------------------------------------------------


def test_the_lock_files_cannot_be_opened_by_others(open_folder: Path) -> None:
    """Even in a store folder others may enter (made before stores were private)."""
    root = open_folder / "store"
    init(root, None)
    os.chmod(root, 0o755)
    for name in ("catalog.db-writer", "catalog.db-waiting"):
        os.chmod(root / name, 0o644)  # as an older assetfs made them
    with Store.open(root):  # opening the store takes the others' access away
        pass
    for name in ("catalog.db-writer", "catalog.db-waiting"):
        assert mode(root / name) == 0o600
        assert as_nobody("flock", "-n", "-x", str(root / name), "true").returncode != 0


@contextmanager
def write_lock_held(root: Path) -> Iterator[None]:
    """Another process holds the store's writer lock (flock -x) for the body."""
    # its own session, so that the kill below reaches the sleep that inherits the lock
    holder = subprocess.Popen(["flock", "-x", str(root / "catalog.db-writer"), "sleep", "300"], start_new_session=True)
    try:
        fd = os.open(root / "catalog.db-writer", os.O_RDONLY)
        try:
            for _ in range(2000):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    time.sleep(0.005)
                except BlockingIOError:
                    break
        finally:
            os.close(fd)
        yield
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


@pytest.fixture
def held_write_lock(tmp_path: Path) -> Iterator[Path]:
    """A SQLite store whose writer lock another process holds until the end."""
    root = tmp_path / "store"
    Store.init(root)[0].close()
    configure(root, 'write_lock_timeout = "1s"\n')
    with write_lock_held(root):
        yield root


def test_a_writer_gives_up_waiting_for_the_write_lock(held_write_lock: Path) -> None:
    root = held_write_lock
    result = run_cli(root, "put", "photos", "-", "--name", "a.txt", input=b"content", check=75)
    error = result.stderr.decode()
    assert error.count("\n") == 1 and "write_lock_timeout" in error, error
    listed = run_cli(root, "ls")  # readers do not need the write lock
    assert listed.stdout == b""
    with Store.open(root) as store:
        assert count(store, "objects") == 0


def test_the_mount_answers_ebusy_while_the_write_lock_is_held(tmp_path: Path) -> None:
    root = tmp_path / "store"
    Store.init(root)[0].close()
    configure(root, 'write_lock_timeout = "1s"\n')
    mount = mounting.start_mount(root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        (mount.path / "photos").mkdir()
        with write_lock_held(root):
            with pytest.raises(OSError) as failure:
                (mount.path / "photos" / "later").mkdir()
            assert failure.value.errno == errno.EBUSY
        (mount.path / "photos" / "later").mkdir()
    finally:
        code = mounting.stop_mount(mount)
    mounting.check_after_unmount(mount, code)
