"""Fixtures shared by the test suite.

Every catalog test runs twice: on the embedded SQLite catalog and on a real PostgreSQL
server (a fresh schema per test). `scripts/test` starts the server and sets
ASSETFS_TEST_DATABASE_URL; with ASSETFS_REQUIRE_POSTGRES=1 a missing server fails the run
instead of skipping the PostgreSQL half.
"""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from cas.store import Store

ASSETFS = str(Path(sys.executable).parent / "assetfs")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: a long test, run only by `scripts/test --long`")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("ASSETFS_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="a long test: run it with `scripts/test --long`")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


def postgres_base_url() -> str | None:
    url = os.environ.get("ASSETFS_TEST_DATABASE_URL")
    if not url:
        if os.environ.get("ASSETFS_REQUIRE_POSTGRES") == "1":
            pytest.fail("ASSETFS_TEST_DATABASE_URL is not set; run the tests through scripts/test")
        pytest.skip("no PostgreSQL server (ASSETFS_TEST_DATABASE_URL unset); run scripts/test")
    return url


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database for one test (or run), dropped afterwards: the catalog makes
    its own schema (`assetfs`) in it, so tests that run at once never share tables."""
    base = postgres_base_url()
    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"create database {name}")
    try:
        yield psycopg.conninfo.make_conninfo(base, dbname=name)
    finally:
        drop_database(base, name)


def drop_database(base: str, name: str, attempts: int = 20) -> None:
    """Drop a test's database, ending the sessions a test left open (FORCE). FORCE may not
    end an autovacuum worker's (not this role's); a plain DROP waits for that one itself."""
    with psycopg.connect(base, autocommit=True) as connection:
        for attempt in range(attempts):
            try:
                connection.execute(f"drop database if exists {name} with (force)")
                return
            except psycopg.errors.InsufficientPrivilege:
                try:
                    connection.execute(f"drop database if exists {name}")
                    return
                except psycopg.errors.ObjectInUse:
                    if attempt + 1 == attempts:
                        raise
                    time.sleep(0.25)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite; for PostgreSQL the URL of a fresh database (the catalog's tables go
    into its schema `assetfs`; `public` is the application's)."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_database() as url:
        yield url


@pytest.fixture
def store_root(tmp_path: Path, database_url: str | None) -> Path:
    root = tmp_path / "store"
    store, _ = Store.init(root, database_url=database_url)
    store.close()
    return root


@pytest.fixture
def store(store_root: Path) -> Iterator[Store]:
    with Store.open(store_root) as opened:
        yield opened


@pytest.fixture
def mounted(store_root: Path, tmp_path: Path) -> Iterator["mounting.Mount"]:
    """The store mounted at tmp_path/mnt; always unmounted, then checked (see mounting.py)."""
    import mounting  # it imports this module

    mount = mounting.start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        yield mount
    finally:
        code = mounting.stop_mount(mount)
    mounting.check_after_unmount(mount, code)


def run_cli(store_root: Path, *args: str, input: bytes | None = None, check: int | None = 0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the `assetfs` command against a store; by default assert it exits 0."""
    result = subprocess.run(
        [ASSETFS, "--store", str(store_root), *args], input=input, capture_output=True, timeout=120,
        env={**os.environ, **(env or {})},
    )
    if check is not None:
        assert result.returncode == check, (
            f"assetfs {' '.join(args)} exited {result.returncode}, expected {check}\n"
            f"stdout: {result.stdout.decode(errors='replace')}\nstderr: {result.stderr.decode(errors='replace')}"
        )
    return result


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    """Start `assetfs serve` processes on free ports (`factory(store_root, *args)`); every one
    is stopped by its pid at the end, even when the test failed."""
    import serving

    started = []

    def start(root: Path, *args: str) -> "serving.Server":
        server = serving.start_server(root, tmp_path / f"serve-{len(started)}.log", *args)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            serving.stop_server(server)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may enter (pytest's tmp_path is root's alone), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")
    folder = Path(tempfile.mkdtemp(prefix="assetfs-open-", dir="/tmp"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)
