"""Absurd durations (issue 11, finding 16): `--expires-in 99999999999w`, a 400-digit grace or
interval are refused where they are read, in one line, and change nothing; the commands that
show times (`ls --json`, `stat`, `trash ls`) keep working afterwards."""

import io
import json
import time
from pathlib import Path

import pytest

from cas.durations import parse_duration
from cas.errors import BadInput
from cas.store import Store
from conftest import run_cli
from test_cli import assert_bad_input, assert_error

HUGE = "9" * 400
HUNDRED_YEARS = 100 * 365 * 86400  # the documented limit


@pytest.mark.parametrize("text", ["99999999999w", f"{HUGE}s", f"{HUGE}.5d", "5300w", f"1h{HUGE}m"])
def test_durations_over_100_years_are_refused(text: str) -> None:
    with pytest.raises(BadInput, match="at most 100 years") as failure:
        parse_duration(text, "--interval")
    message = str(failure.value)
    assert "--interval" in message and "\n" not in message and len(message) < 200


def test_durations_up_to_100_years_are_accepted() -> None:
    assert parse_duration("5200w") == 5200 * 604800
    assert parse_duration(f"{HUNDRED_YEARS}s") == HUNDRED_YEARS


@pytest.fixture
def populated(store_root: Path) -> tuple[Path, str, str]:
    """A store with a named object that expires and a trashed one: (root, live id, trashed id)."""
    with Store.open(store_root) as store:
        live = store.put("docs", io.BytesIO(b"live"), name="live.txt", expires_at=time.time() + 86400).object
        trashed = store.put("docs", io.BytesIO(b"trashed")).object
        store.delete(trashed.id)
    return store_root, live.id, trashed.id


def test_cli_refuses_absurd_durations_and_changes_nothing(populated: tuple[Path, str, str], tmp_path: Path) -> None:
    root, live, trashed = populated
    source = tmp_path / "new.txt"
    source.write_text("new")
    for args in (
        ("put", "docs", str(source), "--expires-in", "99999999999w"),
        ("put", "docs", str(source), "--expires-in", f"{HUGE}d"),
        ("fsck", "--orphan-grace", f"{HUGE}s"),
        ("gc", "--watch", "--interval", f"{HUGE}m"),
        ("trash", "purge", "--older-than", "99999999999w"),
    ):
        line = assert_bad_input(root, *args)
        assert "at most 100 years" in line, line
    assert json.loads(run_cli(root, "ls", "--json").stdout)["id"] == live
    assert run_cli(root, "stat", live).returncode == 0
    assert trashed in run_cli(root, "trash", "ls").stdout.decode()
    assert json.loads(run_cli(root, "trash", "ls", "--json").stdout)["id"] == trashed


@pytest.mark.parametrize("old, new", [('grace = "7d"', f'grace = "{HUGE}d"'), ('interval = "10m"', f'interval = "{HUGE}s"'),
                                      ('min_age = "1h"', 'min_age = "99999999999w"'),
                                      ('orphan_grace = "1h"', f'orphan_grace = "{HUGE}h"')])
def test_config_with_absurd_durations_is_refused(populated: tuple[Path, str, str], old: str, new: str) -> None:
    root = populated[0]
    config = root / "assetfs.toml"
    good = config.read_text()
    assert old in good
    config.write_text(good.replace(old, new))
    try:
        with pytest.raises(BadInput, match="at most 100 years"):
            Store.open(root)
        line = assert_error(run_cli(root, "ls", check=None), 2)
        assert "assetfs.toml" in line and "at most 100 years" in line
    finally:
        config.write_text(good)
    assert run_cli(root, "ls", "--json").stdout


def test_api_refuses_an_expiry_over_100_years_away(store: Store) -> None:
    with pytest.raises(BadInput, match="100 years"):
        store.put("docs", io.BytesIO(b"x"), expires_at=time.time() + HUNDRED_YEARS + 86400)
    assert list(store.list()) == []
