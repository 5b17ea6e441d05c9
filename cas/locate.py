"""Which store a command works on, and why.

The first of these that is set wins:

1. `--store PATH` on the command line;
2. the environment variable `ASSETFS_STORE`;
3. `store = "/path"` in the system configuration, `/etc/assetfs.toml` (or the file that
   `ASSETFS_CONFIG` names, for a second installation or a test);
4. the system default, `/var/lib/assetfs`.

A command on a path that is not a store says which path it tried and which of the four
chose it, so that a user who meant an existing store sees why it was not found, instead of
being told to create a second, empty one.
"""

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cas.config import CONFIG_NAME
from cas.errors import BadInput

SYSTEM_CONFIG = Path("/etc/assetfs.toml")
SYSTEM_DEFAULT = Path("/var/lib/assetfs")
SYSTEM_CONFIG_KEYS = ("store",)

OPTION, ENVIRONMENT, SYSTEM, DEFAULT = "option", "environment", "system config", "default"
MOUNT_SOURCE = "mount source"  # `mount -t fuse.assetfs STORE …` or an fstab line (fusefs/helper.py)


@dataclass(frozen=True)
class StoreChoice:
    path: Path  # absolute
    source: str  # OPTION, ENVIRONMENT, SYSTEM, DEFAULT or MOUNT_SOURCE
    config_file: Path  # the system configuration that was (or would have been) read

    def why(self) -> str:
        """How this path was chosen, in words."""
        if self.source == OPTION:
            return "given with --store"
        if self.source == ENVIRONMENT:
            return "from ASSETFS_STORE"
        if self.source == MOUNT_SOURCE:
            return "the mount's source"
        if self.source == SYSTEM:
            return f"named by 'store' in {self.config_file}"
        return f"the default: no --store, no ASSETFS_STORE and no 'store' in {self.config_file}"


class NotAStore(BadInput):
    """The chosen path is not an assetfs store; nothing was created."""


def system_config_file() -> Path:
    return Path(os.environ.get("ASSETFS_CONFIG") or SYSTEM_CONFIG)


def read_system_config(path: Path) -> Path | None:
    """The store that the system configuration names; None when the file does not exist.

    Like `<store>/assetfs.toml`, an unknown key or a value of the wrong type is an error
    that names it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror}") from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: not valid TOML: {error}") from None
    for key in data:
        if key not in SYSTEM_CONFIG_KEYS:
            raise BadInput(f"{path}: unknown key {key!r} (known: {', '.join(SYSTEM_CONFIG_KEYS)})")
    store = data.get("store")
    if store is None:
        return None
    if not isinstance(store, str) or not store.startswith("/"):
        raise BadInput(f"{path}: store must be an absolute path such as \"/var/lib/assetfs\", got {store!r}")
    return Path(store)


def choose_store(option: str | None) -> StoreChoice:
    """The store a command works on: `--store`, then ASSETFS_STORE, then the system
    configuration, then the system default (this module's docstring)."""
    config_file = system_config_file()
    if option is not None:
        return StoreChoice(_given(option, "--store"), OPTION, config_file)
    environment = os.environ.get("ASSETFS_STORE")
    if environment is not None:
        return StoreChoice(_given(environment, "ASSETFS_STORE"), ENVIRONMENT, config_file)
    named = read_system_config(config_file)
    if named is not None:
        return StoreChoice(named, SYSTEM, config_file)
    return StoreChoice(SYSTEM_DEFAULT, DEFAULT, config_file)


def _given(path: str, where: str) -> Path:
    """A store path given as `where`. An empty one (`--store "$UNSET"`) is refused rather
    than taken for the current folder or for "not given", which would act on another store."""
    if not path.strip():
        raise BadInput(f"{where} is empty: give the store's folder (or leave {where} out)")
    return Path(path).absolute()


def check_store(choice: StoreChoice) -> Path:
    """The chosen path when it holds a store; NotAStore naming the path, the reason and how
    it was chosen otherwise. Only when nothing chose a store does it suggest `assetfs init`."""
    path = choice.path
    if not path.exists():
        reason = "no such folder"
    elif not path.is_dir():
        reason = "not a folder"
    elif not (path / CONFIG_NAME).is_file():
        reason = f"no {CONFIG_NAME} in it"
    else:
        return path
    if choice.source == DEFAULT:
        hint = (f"; name your store with --store, ASSETFS_STORE or store = \"/path\" in {choice.config_file}, "
                "or create it with 'assetfs init'")
    else:
        hint = "; check the path"
    raise NotAStore(f"{path} is not an assetfs store ({reason}; {choice.why()}){hint}")
