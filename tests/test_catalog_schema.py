"""The catalog among an application's tables (issue 8, point 14; docs/schema.md, "Where the
tables are"): on PostgreSQL the catalog has its own schema (`assetfs`, or `database_schema`),
so an application's `public.objects` neither collides with the catalog's `objects` nor is
mistaken for it, while bucket rules name the application's tables as the application does.
On SQLite, rules read an application database the configuration attaches, read-only.
"""

import sqlite3
from pathlib import Path

import psycopg
import pytest

from casgc import run_once
from cas.errors import BadInput
from cas.store import Store
from conftest import run_cli
from gc_helpers import configure
from helpers import count
from test_upgrade import OBJECT_ID, remake_catalog

GC_NOW = '[gc]\nmin_age = "0s"\n'


def init(root: Path, database_url: str | None, *args: str) -> None:
    run_cli(root, "init", *(["--database-url", database_url] if database_url else []), *args)


def put_unnamed(root: Path, data: bytes) -> str:
    return run_cli(root, "put", "avatars", "-", "--no-name", input=data).stdout.decode().split()[0]


def kept_and_trashed(root: Path) -> dict[str, int]:
    with Store.open(root) as store:
        return run_once(store).get("touched").counts


def test_an_application_table_named_objects_in_public(tmp_path: Path, database_url: str | None) -> None:
    """The application has `public.objects` before assetfs comes; `init` makes the catalog
    beside it, and the rule `select 1 from objects …` reads the application's table."""
    if database_url is None:
        pytest.skip("PostgreSQL: the SQLite half is test_a_rule_reads_an_attached_application_database")
    with psycopg.connect(database_url, autocommit=True) as app:
        app.execute("create table public.objects (id serial primary key, title text, asset uuid)")
        app.execute("insert into public.objects (title) values ('a page without an asset')")
    root = tmp_path / "store"
    init(root, database_url)
    configure(root, 'database_schema = "assetfs"\n' + GC_NOW
              + '[buckets.avatars]\nrules = ["select 1 from objects where asset = :id"]\n')
    kept, dropped = put_unnamed(root, b"used by a page"), put_unnamed(root, b"used by nothing")
    with psycopg.connect(database_url, autocommit=True) as app:
        app.execute("insert into public.objects (title, asset) values ('about us', %s)", (kept,))

    assert kept_and_trashed(root) == {"kept": 1, "trashed": 1}
    live = run_cli(root, "ls", "avatars").stdout.decode()
    assert kept in live and dropped not in live
    with psycopg.connect(database_url, autocommit=True) as app:
        assert app.execute("select count(*) from public.objects").fetchone()[0] == 2  # the application's rows
        catalog_tables = {row[0] for row in app.execute(
            "select table_name from information_schema.tables where table_schema = 'assetfs'")}
        public_tables = {row[0] for row in app.execute(
            "select table_name from information_schema.tables where table_schema = 'public'")}
    assert {"objects", "blobs", "nodes", "schema_version"} <= catalog_tables
    assert public_tables == {"objects"}


def test_a_schema_of_its_own_name(tmp_path: Path, database_url: str | None) -> None:
    """`init --database-schema` puts the catalog in that schema; the configuration keeps it."""
    if database_url is None:
        line = run_cli(tmp_path / "s", "init", "--database-schema", "media", check=2).stderr.decode()
        assert "PostgreSQL" in line and line.count("\n") == 1
        assert not (tmp_path / "s").exists()
        return
    root = tmp_path / "store"
    init(root, database_url, "--database-schema", "media_catalog")
    object_id = put_unnamed(root, b"content")
    assert 'database_schema = "media_catalog"' in (root / "assetfs.toml").read_text()
    with psycopg.connect(database_url) as app:
        found = app.execute("select count(*) from media_catalog.objects where id = %s", (object_id,)).fetchone()[0]
    assert found == 1
    bad = run_cli(tmp_path / "other", "init", "--database-url", database_url, "--database-schema", "Bad-Name",
                  check=2)
    assert "schema name" in bad.stderr.decode() and not (tmp_path / "other").exists()


def test_a_catalog_left_in_public_by_an_older_assetfs_is_found_not_recreated(tmp_path: Path,
                                                                              database_url: str | None) -> None:
    """A store whose tables an older assetfs (schema version 8 or before) made in `public` is
    not taken for an empty catalog: the command says where they are and which line to add."""
    if database_url is None:
        pytest.skip("PostgreSQL only: SQLite has no schemas")
    root = tmp_path / "store"
    init(root, database_url, "--database-schema", "public")
    remake_catalog(root, 8)  # what the release before left: version 8, in public
    configure(root, "")  # the configuration of an older assetfs: no database_schema
    for args in (["ls"], ["init"]):
        result = run_cli(root, *args, check=78)
        line = result.stderr.decode()
        assert line.count("\n") == 1 and 'database_schema = "public"' in line, line
    configure(root, 'database_schema = "public"\n')
    run_cli(root, "migrate")
    assert OBJECT_ID in run_cli(root, "ls").stdout.decode()


def test_two_stores_share_a_database_in_schemas_of_their_own(tmp_path: Path, database_url: str | None) -> None:
    """Another store's catalog in the database (here in the default schema `assetfs`, which
    the role's "$user" also names) is not one an older assetfs left: a second store's init
    in a schema of its own works, and each sees its own objects."""
    if database_url is None:
        pytest.skip("PostgreSQL only: SQLite has no schemas")
    first, second = tmp_path / "first", tmp_path / "second"
    init(first, database_url)
    init(second, database_url, "--database-schema", "second_store")
    one, two = put_unnamed(first, b"first's"), put_unnamed(second, b"second's")
    assert one in run_cli(first, "ls").stdout.decode() and two not in run_cli(first, "ls").stdout.decode()
    assert two in run_cli(second, "ls").stdout.decode() and one not in run_cli(second, "ls").stdout.decode()


def test_a_rule_reads_an_attached_application_database(tmp_path: Path, database_url: str | None) -> None:
    """SQLite: `attach = { app = "/path/app.db" }` lets rules read `app.objects`, read-only."""
    if database_url is not None:
        pytest.skip("SQLite: the PostgreSQL half is test_an_application_table_named_objects_in_public")
    application = tmp_path / "app.db"
    with sqlite3.connect(application) as app:
        app.execute("create table objects (title text, asset text)")
    root = tmp_path / "store"
    init(root, None)
    configure(root, f'attach = {{ app = "{application}" }}\n' + GC_NOW
              + '[buckets.avatars]\nrules = ["select 1 from app.objects where asset = :id"]\n')
    kept, _ = put_unnamed(root, b"used by a page"), put_unnamed(root, b"used by nothing")
    with sqlite3.connect(application) as app:
        app.execute("insert into objects values ('about us', ?)", (kept,))

    assert kept_and_trashed(root) == {"kept": 1, "trashed": 1}
    with Store.open(root) as store:
        assert count(store, "objects", "deleted_at is null") == 1  # the catalog's objects, not the application's
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.catalog.run(lambda tx: tx.execute("insert into app.objects values ('x', 'y')"))
    with sqlite3.connect(application) as app:
        assert app.execute("select count(*) from objects").fetchone()[0] == 1


@pytest.mark.parametrize("toml, key", [
    ('attach = { main = "/srv/app.db" }\n', "attach"),
    ('attach = { app = "relative.db" }\n', "attach.app"),
    ('attach = "app.db"\n', "attach"),
    ('database_schema = "assetfs"\n', "database_schema"),
])
def test_bad_attach_and_schema_settings(store_root: Path, database_url: str | None, toml: str, key: str) -> None:
    if database_url is not None:
        toml = toml if toml.startswith("attach") else 'database_schema = "pg_toast"\n'
    configure(store_root, toml)
    with pytest.raises(BadInput, match=key.split(".")[0]):
        Store.open(store_root)


def test_a_missing_attached_database_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "store"
    init(root, None)
    configure(root, f'attach = {{ app = "{tmp_path / "missing.db"}" }}\n')
    line = run_cli(root, "ls", check=1).stderr.decode()
    assert line.count("\n") == 1 and "attaches" in line, line
