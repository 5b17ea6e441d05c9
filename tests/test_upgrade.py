"""No DDL on open, and upgrades by `assetfs migrate` (issue 8, point 15; docs/upgrade.md).

Opening a store only reads the catalog's schema version: a catalog older than this assetfs
(made here by applying only the first migrations) is refused with one line that names the
command to run and exit code 78, and stays as it was; `migrate --dry-run` prints the SQL;
`migrate` upgrades it with the rows it had. A newer catalog says to upgrade assetfs. Read
commands write nothing: a read-only PostgreSQL role and a user who may only read a SQLite
store's files run them.
"""

import io
import json
import os
import shlex
import stat
import subprocess
import time
from pathlib import Path

import pytest

from cas.catalog import open_catalog
from cas.catalog.migrate import current_version, migrate
from cas.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from cas.config import load_config
from cas.store import Store
from conftest import ASSETFS, run_cli
from helpers import READER_IN_GROUP, group_store, read_only_role

OBJECT_ID = "01900000-0000-7000-8000-000000000001"
HASH = "ab" * 32
MISMATCH_EXIT = 78


def raw_catalog(root: Path):
    config = load_config(root)
    return open_catalog(root, config.database_url, schema=config.database_schema)


def remake_catalog(root: Path, version: int) -> None:
    """Replace the store's catalog by one at schema `version` (the first `version` migrations,
    as an older assetfs left it), holding one object and a hold on it; 0: no tables at all."""
    if load_config(root).database_url is None:  # a new, empty database file
        for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
            (root / name).unlink(missing_ok=True)
        (root / "catalog.db").touch(0o600)
    catalog = raw_catalog(root)
    try:
        if catalog.dialect == "postgres":
            catalog.run(lambda tx: tx.execute(f"drop schema {catalog.schema} cascade"))
        if version == 0:
            return
        migrate(catalog, target=version)

        def fill(tx) -> None:
            now = time.time()
            tx.execute("insert into blobs (hash, size, created_at) values (:hash, 5, :now)", {"hash": HASH, "now": now})
            tx.execute("insert into objects (id, bucket, hash, size, content_type, filename, created_at) "
                       "values (:id, 'old', :hash, 5, 'text/plain', 'old.txt', :now)",
                       {"id": OBJECT_ID, "hash": HASH, "now": now})
            tx.execute("insert into holds (object_id, owner, created_at) values (:id, 'app:page-1', :now)",
                       {"id": OBJECT_ID, "now": now})

        catalog.run(fill)
    finally:
        catalog.close()


def version_of(root: Path) -> int:
    catalog = raw_catalog(root)
    try:
        return current_version(catalog)
    finally:
        catalog.close()


def one_line(result: subprocess.CompletedProcess) -> str:
    text = result.stderr.decode()
    assert text.count("\n") == 1 and "Traceback" not in text, text
    return text.strip()


def test_an_older_catalog_is_refused_then_migrated(store_root: Path) -> None:
    older = SCHEMA_VERSION - 1
    remake_catalog(store_root, older)
    fix = f"assetfs --store {shlex.quote(str(store_root))} migrate"

    for args in (["ls"], ["stat", OBJECT_ID], ["put", "b", "-"], ["gc", "--dry-run"], ["hold", "ls"], ["init"],
                 ["mount", str(store_root.parent / "no-such-mountpoint")]):
        line = one_line(run_cli(store_root, *args, input=b"x", check=MISMATCH_EXIT))
        assert f"schema version {older}" in line and f"run '{fix}'" in line, line
    assert version_of(store_root) == older, "a command migrated the catalog"

    dry = run_cli(store_root, "migrate", "--dry-run").stdout.decode()
    catalog = raw_catalog(store_root)
    types = catalog.types
    catalog.close()
    for statement in MIGRATIONS[older]:
        assert statement.format(**types).strip() + ";" in dry
    assert f"insert into schema_version (version, applied_at) values ({SCHEMA_VERSION}," in dry
    assert version_of(store_root) == older, "--dry-run changed the catalog"

    done = run_cli(store_root, "migrate").stdout.decode()
    assert f"from schema version {older} to {SCHEMA_VERSION}" in done
    assert version_of(store_root) == SCHEMA_VERSION
    assert OBJECT_ID in run_cli(store_root, "ls", "old").stdout.decode()
    assert "app:page-1" in run_cli(store_root, "hold", "ls", OBJECT_ID).stdout.decode()
    assert "up to date" in run_cli(store_root, "migrate").stdout.decode()
    run_cli(store_root, "put", "b", "-", input=b"after the upgrade")


def test_two_servers_migrate_at_once(store_root: Path) -> None:
    """Both succeed; the migrations run once (the schema lock), the second finds it up to date."""
    remake_catalog(store_root, SCHEMA_VERSION - 1)
    runs = [subprocess.Popen([ASSETFS, "--store", str(store_root), "migrate"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    said = sorted(out.decode() for out, _ in outputs)
    assert "migrated the catalog" in said[0] and "up to date" in said[1], said
    catalog = raw_catalog(store_root)
    try:
        versions = catalog.run(lambda tx: tx.all("select version from schema_version order by version"), write=False)
    finally:
        catalog.close()
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))


def test_every_older_version_migrates(store_root: Path) -> None:
    """From each older version (however many migrations there are) to this one, in one run."""
    for version in range(1, SCHEMA_VERSION):
        remake_catalog(store_root, version)
        catalog = raw_catalog(store_root)
        try:
            assert migrate(catalog)[0] == version
        finally:
            catalog.close()
        assert version_of(store_root) == SCHEMA_VERSION
        with Store.open(store_root, read_only=True) as store:
            assert store.get(OBJECT_ID).bucket == "old"


def test_a_newer_catalog_says_to_upgrade_assetfs(store_root: Path) -> None:
    catalog = raw_catalog(store_root)
    catalog.run(lambda tx: tx.execute("insert into schema_version (version, applied_at) values (:v, 0)",
                                      {"v": SCHEMA_VERSION + 1}))
    catalog.close()
    for args in (["ls"], ["migrate"], ["migrate", "--dry-run"], ["init"]):
        line = one_line(run_cli(store_root, *args, check=MISMATCH_EXIT))
        assert f"schema version {SCHEMA_VERSION + 1}, newer" in line and "upgrade assetfs" in line, line
    assert version_of(store_root) == SCHEMA_VERSION + 1


def test_a_catalog_without_tables_says_to_run_init(store_root: Path) -> None:
    remake_catalog(store_root, 0)
    line = one_line(run_cli(store_root, "ls", check=MISMATCH_EXIT))
    assert f"'assetfs --store {shlex.quote(str(store_root))} init'" in line, line
    assert version_of(store_root) == 0
    run_cli(store_root, "init")
    assert version_of(store_root) == SCHEMA_VERSION
    run_cli(store_root, "put", "b", "-", input=b"content")


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file of the store: (size, mtime in ns, ctime in ns)."""
    state = {}
    for folder, _, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(folder, name))
            state[os.path.relpath(os.path.join(folder, name), root)] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return state


READS = (["ls"], ["ls", "photos/"], ["stat", "photos/a.txt"], ["get", "{id}", "-o", "-"], ["cat", "{id}"],
         ["hold", "ls"], ["trash", "ls"], ["stats"], ["fsck"], ["fsck", "--verify-content"], ["gc", "--dry-run"])
URL = ["url", "{id}", "--base-url", "http://assets.test"]  # signs with <store>/serve-secret, which init made


def read_commands(object_id: str, *more: list[str]) -> list[list[str]]:
    return [[part.format(id=object_id) for part in args] for args in (*READS, *more)]


def put_and_hold(root: Path) -> str:
    """An object named photos/a.txt, held, and one in the trash (gc --dry-run would collect it)."""
    object_id = run_cli(root, "put", "photos", "-", "--name", "a.txt", input=b"shown").stdout.decode().split()[0]
    run_cli(root, "hold", "add", object_id, "app")
    trashed = run_cli(root, "put", "photos", "-", "--no-name", input=b"gone").stdout.decode().split()[0]
    run_cli(root, "rm", trashed)
    return object_id


def test_read_commands_write_nothing(store_root: Path) -> None:
    run_cli(store_root, "init")  # on a store made before init made the signing secret: it makes it
    assert (store_root / "serve-secret").exists()
    object_id = put_and_hold(store_root)
    before = tree_state(store_root)
    for args in read_commands(object_id, URL):
        run_cli(store_root, *args)
    assert tree_state(store_root) == before
    signed = run_cli(store_root, "url", object_id).stdout.decode()
    assert signed.startswith(f"/assets/by-id/{object_id}?expires=") and "&signature=" in signed


def test_url_without_a_secret_says_how_to_make_it(store_root: Path) -> None:
    """url writes nothing, so it does not make a missing secret: it says who makes it how."""
    object_id = put_and_hold(store_root)
    before = tree_state(store_root)
    line = one_line(run_cli(store_root, "url", object_id, check=1))
    assert "no signing secret" in line and f"'assetfs --store {shlex.quote(str(store_root))} init'" in line, line
    assert tree_state(store_root) == before


def test_a_read_only_postgres_role_reads(store_root: Path, database_url: str | None) -> None:
    """A role with SELECT on the catalog's tables and nothing else runs every read command."""
    if database_url is None:
        pytest.skip("PostgreSQL: the SQLite half is test_a_user_who_may_only_read_a_sqlite_store")
    run_cli(store_root, "init")  # the signing secret
    object_id = put_and_hold(store_root)
    with read_only_role(store_root, database_url):
        for args in read_commands(object_id, URL):
            run_cli(store_root, *args)
        assert run_cli(store_root, "cat", object_id).stdout == b"shown"
        assert "(dry run)" in run_cli(store_root, "gc", "--dry-run").stdout.decode()
        dumped = run_cli(store_root, "dump", "--pause-sweep", "0").stdout.decode().splitlines()
        assert len(dumped) > 2 and "end" in json.loads(dumped[-1])  # a backup by the reader, whole
        refused = one_line(run_cli(store_root, "put", "photos", "-", input=b"new", check=1))
        assert "permission denied" in refused, refused


def test_a_user_who_may_only_read_a_sqlite_store(open_folder: Path) -> None:
    """A member of the store's group (not its owner) reads a SQLite store no one has open:
    SQLite cannot make the WAL's files in a folder it may not write to. It may not read the
    store's signing secret: `url` says so in one line."""
    root = group_store(open_folder)
    object_id = put_and_hold(root)
    assert not (root / "catalog.db-wal").exists()
    before = tree_state(root)
    for args in read_commands(object_id):
        result = subprocess.run([*READER_IN_GROUP, ASSETFS, "--store", str(root), *args], capture_output=True,
                                timeout=60, cwd="/")
        assert result.returncode == 0, (args, result.stderr.decode())
    url = subprocess.run([*READER_IN_GROUP, ASSETFS, "--store", str(root), "url", object_id], capture_output=True,
                         timeout=60, cwd="/")
    assert url.returncode == 1 and "cannot read the signing secret" in one_line(url), url.stderr.decode()
    assert tree_state(root) == before
    assert stat.S_IMODE(root.stat().st_mode) == 0o2750  # the group may read, not write

    with Store.open(root) as owners:  # while the owner has it open: SQLite reads the WAL read-only
        owners.put("photos", io.BytesIO(b"newer"), name="b.txt")
        assert (root / "catalog.db-wal").exists()
        result = subprocess.run([*READER_IN_GROUP, ASSETFS, "--store", str(root), "stat", "photos/b.txt"],
                                capture_output=True, timeout=60, cwd="/")
        assert result.returncode == 0 and b"b.txt" in result.stdout, result.stderr.decode()
