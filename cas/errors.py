"""The errors assetfs reports to its users.

Every error carries a one-line message that says what went wrong and, where it helps,
what to do. The CLI prints the message alone and exits with the class's exit code; a class
with an `errno` is that errno in the mount.
"""

import errno as errno_codes


class AssetfsError(Exception):
    """Base class: a failure the user should see as one line, not a traceback."""

    exit_code = 1
    errno: int | None = None

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        if errno is not None:
            self.errno = errno


class BadInput(AssetfsError):
    """Invalid names, ids, paths, options or configuration; nothing was changed."""

    exit_code = 2


class TooLarge(BadInput):
    """More bytes than the bucket's `max_size` allows; nothing was stored."""

    errno = errno_codes.EFBIG


class NotFound(AssetfsError):
    """The object, bucket or name does not exist (or is not visible in this view)."""

    exit_code = 1


class StoreError(AssetfsError):
    """The store could not do what was asked (disk full, damaged store, database down)."""

    exit_code = 1


class CatalogError(StoreError):
    """The catalog database refused the connection or failed a statement; the message is the
    database's own first line (a wrong password, a server that does not answer, …)."""


class Busy(StoreError):
    """The catalog's write lock stayed taken longer than the store's `write_lock_timeout`
    (another writer, or someone holding the lock file); nothing was changed. Try again."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h)
    errno = errno_codes.EBUSY


class MountBusy(StoreError):
    """A mount still had open files or a process's working folder in it; it was left mounted."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h): close them and try again
    errno = errno_codes.EBUSY


class SchemaMismatch(StoreError):
    """The catalog's schema version is not the one this assetfs was built for; nothing was
    read or changed. The message says the one command that fixes it (docs/upgrade.md)."""

    exit_code = 78  # EX_CONFIG (sysexits.h)


class CatalogOutdated(SchemaMismatch):
    """The catalog is older than this assetfs (or has no tables yet): `assetfs migrate`
    (or `assetfs init`) brings it up to date."""


class CatalogNewer(SchemaMismatch):
    """The catalog was migrated by a newer assetfs: this server's assetfs must be upgraded."""
