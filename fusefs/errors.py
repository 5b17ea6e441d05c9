"""Only `pyfuse3.FUSEError` may leave a handler: any other exception ends pyfuse3's main loop
and leaves a dead mount. `handler` wraps each operation so the store's errors become their
errnos and anything unexpected is logged and becomes EIO, while the mount goes on serving.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pyfuse3

from cas import names
from cas.errors import BadInput, Busy, NotFound, StoreError

log = logging.getLogger("assetfs.mount")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_faults: dict[str, int] = {}


def inject_fault(operation: str, times: int = 1) -> None:
    """Make the next `times` calls of `operation` raise unexpectedly (for tests of the EIO path)."""
    _faults[operation] = times


def fail(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


def to_fuse_error(error: BaseException) -> pyfuse3.FUSEError | None:
    """The errno for an error the store raises on purpose; None for an unexpected one."""
    if isinstance(error, pyfuse3.FUSEError):
        return error
    if isinstance(error, names.TreeError):
        return pyfuse3.FUSEError(error.errno)
    if isinstance(error, NotFound):
        return pyfuse3.FUSEError(errno.ENOENT)
    if isinstance(error, BadInput):
        return pyfuse3.FUSEError(errno.EINVAL)
    if isinstance(error, OSError) and error.errno:
        return pyfuse3.FUSEError(error.errno)
    if isinstance(error, Busy):  # the catalog's write lock stayed taken (docs/security.md)
        return pyfuse3.FUSEError(errno.EBUSY)
    if isinstance(error, StoreError) and "disk is full" in str(error):
        return pyfuse3.FUSEError(errno.ENOSPC)
    return None


def handler(method: F) -> F:
    """Wrap one operation: FUSEError passes, the store's errors map to errnos, anything else
    is logged with its traceback and becomes EIO."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            if _faults.get(name):
                _faults[name] -= 1
                raise RuntimeError(f"injected fault in {name}")
            return await method(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception as error:
            mapped = to_fuse_error(error)
            if mapped is not None:
                log.debug("%s: %s", name, error)
                raise mapped from None
            log.exception("unexpected error in %s; answering EIO", name)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapped  # type: ignore[return-value]
