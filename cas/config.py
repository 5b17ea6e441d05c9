"""The store's configuration file, `<store>/assetfs.toml`.

Every key is known and typed: an unknown key or a value of the wrong type is an error
that names the key, so a typo never silently falls back to a default.

    database_url = "postgresql://user:pass@host/db"   # optional; SQLite in the store if absent
    database_schema = "assetfs"  # PostgreSQL: the schema of the catalog's tables
    attach = { app = "/srv/app/app.db" }   # SQLite: databases bucket rules may read (`app.profile`)
    orphan_grace = "1h"        # files with no catalog row younger than this are left alone
    write_lock_timeout = "30s" # SQLite: a writer waits this long at most for the write lock
    disk_reserve = "8MiB"      # SQLite: room kept for the catalog on a full disk ("0" for none)

    [gc]
    min_age = "1h"             # touched objects younger than this are not checked yet
    batch_size = 500
    interval = "10m"
    rule_timeout = "2s"        # a bucket rule that takes longer fails: its bucket is skipped

    [storage]
    syncfs = "auto"            # flush many files with one syncfs: "yes", "no" (fsync each), or
                               # "auto": "no" on CephFS, NFS and FUSE filesystems (cas/durability.py)

    [bucket_defaults]          # settings of every bucket not listed under [buckets]
    dedupe = true
    grace = "7d"

    [buckets.avatars]
    dedupe = true
    grace = "30d"
    rules = ["select 1 from profile where photo_id = :id"]
    public = false             # readers need no token (assetfs serve, docs/http.md)
    max_size = "10G"           # larger files are refused (default: no limit)
    free_superseded = "1m"     # a mount's own version of a file that it replaces within this
                               # long is freed at once, not trashed ("0s": never; cas/superseded.py)

    [serve]                    # assetfs serve (docs/http.md)
    listen = "127.0.0.1:8080"
    accel_redirect = "/internal/blobs/"   # answer GETs with X-Accel-Redirect for nginx
    base_url = "https://assets.example.org"   # what `assetfs url` and the API's links start with
"""

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cas.durability import SETTINGS as SYNCFS_SETTINGS
from cas.durations import parse_duration
from cas.errors import BadInput
from cas.sizes import parse_size
from cas.validate import check_bucket

CONFIG_NAME = "assetfs.toml"
DEFAULT_SCHEMA = "assetfs"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_RESERVED_ATTACH = {"main", "temp"}
DAY = 86400.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class BucketConfig:
    dedupe: bool = True
    grace: float = 7 * DAY
    rules: tuple[str, ...] = ()
    public: bool = False  # assetfs serve: read without a token
    max_size: int | None = None  # bytes: larger files are refused (EFBIG in the mount)
    free_superseded: float = 60.0  # seconds: a writer's own version replaced this soon is freed (cas/superseded.py)


@dataclass(frozen=True)
class ServeConfig:
    """`[serve]`: the HTTP server's settings (docs/http.md)."""

    listen: str = "127.0.0.1:8080"
    workers: int = 1
    accel_redirect: str | None = None  # a prefix such as "/internal/blobs/": nginx sends the bytes
    base_url: str | None = None  # links the server and `assetfs url` hand out start with this


@dataclass(frozen=True)
class GcConfig:
    min_age: float = 3600.0
    batch_size: int = 500
    interval: float = 600.0
    rule_timeout: float = 2.0


@dataclass(frozen=True)
class StorageConfig:
    syncfs: str = "auto"  # "auto", "yes" or "no" (cas/durability.py)


@dataclass(frozen=True)
class Config:
    database_url: str | None = None
    database_schema: str = DEFAULT_SCHEMA
    attach: dict[str, str] = field(default_factory=dict)
    orphan_grace: float = 3600.0
    write_lock_timeout: float = 30.0
    disk_reserve: int = 8 * MIB
    gc: GcConfig = field(default_factory=GcConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    bucket_defaults: BucketConfig = field(default_factory=BucketConfig)
    buckets: dict[str, BucketConfig] = field(default_factory=dict)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def bucket(self, name: str) -> BucketConfig:
        return self.buckets.get(name, self.bucket_defaults)


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{CONFIG_NAME}: {where} must be true or false, got {value!r}")
    return value


def _positive_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadInput(f"{CONFIG_NAME}: {where} must be a whole number of at least 1, got {value!r}")
    return value


def _duration(value: Any, where: str) -> float:
    return parse_duration(value, what=f"{CONFIG_NAME}: {where}")


def _positive_duration(value: Any, where: str) -> float:
    seconds = _duration(value, where)
    if seconds <= 0:
        raise BadInput(f"{CONFIG_NAME}: {where} must be longer than 0s, got {value!r}")
    return seconds


def _size(value: Any, where: str) -> int:
    return parse_size(value, what=f"{CONFIG_NAME}: {where}")


def _size_or_zero(value: Any, where: str) -> int:
    return parse_size(value, what=f"{CONFIG_NAME}: {where}", minimum=0)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput(f"{CONFIG_NAME}: {where} must be a non-empty string, got {value!r}")
    return value


def _rules(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(rule, str) and rule.strip() for rule in value):
        raise BadInput(f"{CONFIG_NAME}: {where} must be a list of SQL strings, got {value!r}")
    for rule in value:
        if ":id" not in rule:
            raise BadInput(f"{CONFIG_NAME}: {where}: rule {rule!r} does not use the :id parameter")
    return tuple(value)


def _table(raw: Any, where: str, keys: dict[str, Callable[[Any, str], Any]]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadInput(f"{CONFIG_NAME}: [{where}] must be a table")
    parsed = {}
    for key, value in raw.items():
        if key not in keys:
            known = ", ".join(sorted(keys))
            raise BadInput(f"{CONFIG_NAME}: unknown key {key!r} in [{where}] (known: {known})")
        parsed[key] = keys[key](value, f"{where}.{key}")
    return parsed


def _syncfs(value: Any, where: str) -> str:
    if value not in SYNCFS_SETTINGS:
        raise BadInput(f"{CONFIG_NAME}: {where} must be one of {', '.join(SYNCFS_SETTINGS)}, got {value!r}")
    return value


_STORAGE_KEYS = {"syncfs": _syncfs}


def check_schema_name(value: Any, where: str) -> str:
    """A PostgreSQL schema name assetfs writes into SQL: lower-case letters, digits and `_`."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value) or value.startswith("pg_"):
        raise BadInput(f"{where} must be a schema name of lower-case letters, digits and '_' "
                       f"(not starting with a digit or 'pg_'), got {value!r}")
    return value


def _attach(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadInput(f"{CONFIG_NAME}: {where} must be a table of NAME = \"/path/to/database\"")
    for name, path in value.items():
        if not _IDENTIFIER.fullmatch(name) or name in _RESERVED_ATTACH:
            raise BadInput(f"{CONFIG_NAME}: {where}: {name!r} is not a name rules can use "
                           "(lower-case letters, digits and '_'; not main or temp)")
        if not isinstance(path, str) or not path.startswith("/"):
            raise BadInput(f"{CONFIG_NAME}: {where}.{name} must be an absolute path, got {path!r}")
    return dict(value)


_BUCKET_KEYS = {"dedupe": _boolean, "grace": _duration, "rules": _rules, "public": _boolean,
                "max_size": _size, "free_superseded": _duration}


def _prefix(value: Any, where: str) -> str:
    text = _text(value, where)
    if not text.startswith("/") or not text.endswith("/") or any(c in text for c in "?#\\ \r\n"):
        raise BadInput(f"{CONFIG_NAME}: {where} must be a URL path that starts and ends with '/', got {value!r}")
    return text
_GC_KEYS = {"min_age": _duration, "batch_size": _positive_int, "interval": _duration,
            "rule_timeout": _positive_duration}
_SERVE_KEYS = {"listen": _text, "workers": _positive_int, "accel_redirect": _prefix, "base_url": _text}


def parse_config(raw: dict[str, Any]) -> Config:
    top_keys: dict[str, Callable[[Any, str], Any]] = {
        "database_url": _text,
        "database_schema": lambda value, where: check_schema_name(value, f"{CONFIG_NAME}: {where}"),
        "attach": _attach,
        "orphan_grace": _duration,
        "write_lock_timeout": _positive_duration,
        "disk_reserve": _size_or_zero,
        "gc": lambda value, where: GcConfig(**_table(value, where, _GC_KEYS)),
        "storage": lambda value, where: StorageConfig(**_table(value, where, _STORAGE_KEYS)),
        "bucket_defaults": lambda value, where: BucketConfig(**_table(value, where, _BUCKET_KEYS)),
        "buckets": lambda value, where: value,
        "serve": lambda value, where: ServeConfig(**_table(value, where, _SERVE_KEYS)),
    }
    settings = _table(raw, "top level", top_keys)
    if "database_schema" in settings and "database_url" not in settings:
        raise BadInput(f"{CONFIG_NAME}: database_schema is for a PostgreSQL catalog (database_url); this store's is SQLite")
    if "attach" in settings and "database_url" in settings:
        raise BadInput(f"{CONFIG_NAME}: attach is for a SQLite catalog; a PostgreSQL rule names other schemas itself")
    buckets_raw = settings.pop("buckets", {})
    if not isinstance(buckets_raw, dict):
        raise BadInput(f"{CONFIG_NAME}: [buckets] must be a table of bucket tables")
    defaults = settings.get("bucket_defaults", BucketConfig())
    buckets = {}
    for name, table in buckets_raw.items():
        try:
            check_bucket(name)
        except BadInput as error:
            raise BadInput(f"{CONFIG_NAME}: [buckets.{name}]: {error}") from None
        overrides = _table(table, f"buckets.{name}", _BUCKET_KEYS)
        buckets[name] = BucketConfig(**{**defaults.__dict__, **overrides})
    return Config(**settings, buckets=buckets)


def load_config(store_root: Path) -> Config:
    path = store_root / CONFIG_NAME
    try:
        with open(path, "rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise BadInput(f"{store_root} is not an assetfs store (no {CONFIG_NAME}); create one with 'assetfs init'") from None
    except tomllib.TOMLDecodeError as error:
        raise BadInput(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise BadInput(f"cannot read {path}: {error.strerror}") from None
    return parse_config(raw)


def render_config(database_url: str | None, database_schema: str = DEFAULT_SCHEMA) -> str:
    """The text `assetfs init` writes: the defaults, spelled out, so operators can edit them."""
    url_line = (f"database_url = {_toml_string(database_url)}\n"
                f"database_schema = {_toml_string(database_schema)}   # the schema of the catalog's tables\n"
                ) if database_url else (
        "# database_url = \"postgresql://user@host/dbname\"   # default: SQLite in this store;\n"
        "#   the password from PGPASSWORD or PGPASSFILE (docs/security.md)\n"
        "# attach = { app = \"/srv/app/app.db\" }   # databases bucket rules read (as app.profile)\n"
    )
    return (
        "# assetfs store configuration; see the README for every key.\n"
        + url_line
        + 'orphan_grace = "1h"\nwrite_lock_timeout = "30s"\n'
        + ('' if database_url else 'disk_reserve = "8MiB"\n')
        + '\n'
        + '[gc]\nmin_age = "1h"\nbatch_size = 500\ninterval = "10m"\nrule_timeout = "2s"\n\n'
        + '[storage]\nsyncfs = "auto"   # "no" on a shared filesystem (CephFS, NFS): fsync each file\n\n'
        + '[bucket_defaults]\ndedupe = true\ngrace = "7d"\n\n'
        + "# [buckets.avatars]\n# grace = \"30d\"\n# rules = [\"select 1 from profile where photo_id = :id\"]\n"
    )


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
