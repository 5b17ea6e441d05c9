"""A catalog database that refuses or fails is reported in one line that names the cause
(issue 11, finding 20): a wrong PostgreSQL password, a server that is not there, a
statement the database refuses. Not "pool initialization incomplete", not a two-line
"unexpected error".
"""

from pathlib import Path

import psycopg
import pytest

from cas.config import CONFIG_NAME, load_config
from conftest import run_cli


def use_catalog(store_root: Path, **changes: str) -> None:
    """Point the store's configuration at the PostgreSQL catalog with these conninfo changes."""
    url = load_config(store_root).database_url
    changed = psycopg.conninfo.make_conninfo(**{**psycopg.conninfo.conninfo_to_dict(url), **changes})
    (store_root / CONFIG_NAME).write_text(f'database_url = "{changed}"\n')


def error_line(result) -> str:
    error = result.stderr.decode()
    assert error.count("\n") == 1, error
    assert "unexpected error" not in error, error
    return error


def postgres_only(database_url: str | None) -> None:
    if database_url is None:
        pytest.skip("a SQLite catalog has no server to connect to")


def test_a_wrong_password(store_root: Path, database_url: str | None) -> None:
    postgres_only(database_url)
    use_catalog(store_root, password="wrong")
    error = error_line(run_cli(store_root, "ls", check=1))
    assert "password authentication failed" in error


def test_a_server_that_is_not_there(store_root: Path, database_url: str | None) -> None:
    postgres_only(database_url)
    use_catalog(store_root, port="1")
    error = error_line(run_cli(store_root, "stat", "00000000-0000-0000-0000-000000000001", check=1))
    assert "Connection refused" in error


def test_a_database_error(store_root: Path, database_url: str | None) -> None:
    if database_url is None:  # the catalog file is something else
        (store_root / "catalog.db").write_bytes(b"not a database " * 1000)
    else:  # a table that is not what this assetfs expects: `ls` reads a column that is gone
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("alter table assetfs.objects rename column deleted_at to renamed")
    error = error_line(run_cli(store_root, "ls", check=1))
    assert error.startswith("assetfs: catalog database error: ")
