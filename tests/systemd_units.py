"""The units of scripts/systemd as tests use them: their settings, and their command lines
made to run here (this checkout's `assetfs`, a test's store and mount point instead of the
installed paths the units name)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

UNITS = Path(__file__).resolve().parent.parent / "scripts" / "systemd"
INSTALLED = "/opt/assetfs/.venv/bin/assetfs"
HERE = str(Path(sys.executable).parent / "assetfs")
STORE, MOUNTPOINT = "/srv/assetfs", "/srv/assets"


def settings(name: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, by key, in order."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def here(text: str, store: Path | None = None, mountpoint: Path | None = None) -> str:
    text = text.replace(INSTALLED, HERE)
    if store is not None:
        text = text.replace(STORE, str(store))
    if mountpoint is not None:
        text = text.replace(MOUNTPOINT, str(mountpoint))
    return text


def command(name: str, key: str, store: Path, mountpoint: Path | None = None,
            main_pid: int | None = None) -> tuple[list[str], dict[str, str]]:
    """A unit's command line (ExecStart, ExecReload…) and its Environment=, for this checkout."""
    (line,) = settings(name)[key]
    if main_pid is not None:
        line = line.replace("$MAINPID", str(main_pid))
    environment = dict(item.split("=", 1) for value in settings(name).get("Environment", [])
                       for item in shlex.split(here(value, store, mountpoint)))
    return shlex.split(here(line, store, mountpoint)), environment


def installed_copy(name: str, folder: Path) -> Path:
    """The unit with this checkout's assetfs in ExecStart, so that verify finds it."""
    copy = folder / name
    copy.write_text(here((UNITS / name).read_text()))
    return copy
