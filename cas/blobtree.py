"""The files of a store: staging, the hash-sharded blob tree and the per-object aliases.

    <store>/blobs/ab/cd/abcd…                           one 0444 file per distinct content
    <store>/objects/<bucket>/wx/yz/<id>/<filename>      a hardlink to the object's blob, where
                                                        wxyz are the id's last four hex digits
    <store>/tmp/                                        staging, same filesystem as blobs/

Aliases of layout 1 (`objects/<bucket>/<id[0:2]>/<id>/`, before the alias layout version 2)
are still found where an alias is changed or removed, until `cas/layout.py` has moved them.

Nothing here touches the catalog. The caller decides when these steps run (docs/concurrency.md):
blobs are installed and removed only under the blob lock.
"""

import errno
import fcntl
import itertools
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3

from cas import faults, signalmask, sparse, syscalls
from cas.errors import StoreError
from cas.faults import crash_point

CHUNK = 4 * 1024 * 1024
STAGE_CHUNK = 1024 * 1024  # staging reads and hashes this much at a time
WRITE_PIECE = 256 * 1024  # the most one write(2) of a staged copy writes: measured on ext4 (kernel
# 6.18, a 2-CPU VM), 512 MiB in writes of 1 MiB took 0.8-1.8 s in most runs, in 256 KiB writes
# 0.25-0.32 s (probably the large page-cache folios ext4 gives large writes)
WRITEBACK_STEP = 8 * 1024 * 1024  # staging starts the writeback of what it wrote this often, one
# step behind where it writes (docs/concurrency.md, "Put"; measured: every chunk is slower)
PREFIX_SIZE = 64 * 1024  # compared with a stored blob before hashing a whole file against it
HEAD_SIZE = 8192  # bytes kept for content-type sniffing
BLOB_MODE = 0o444
FICLONE = 0x40049409  # ioctl: share the source's extents (btrfs, XFS); fails elsewhere


@dataclass(frozen=True)
class KnownContent:
    """Content found to be stored already: a put of it needs no staged copy."""

    hash: str
    size: int
    head: bytes


@dataclass
class StagedFile:
    path: Path
    hash: str
    size: int
    head: bytes  # the first bytes, for content-type sniffing without reading the data again
    durable: bool = False  # flushed to disk (make_durable)


class SourceChanged(StoreError):
    """The file being stored changed while it was read: what was read is not its content.
    The message follows the file's name ("big.bin changed while …")."""


class _SourceError(Exception):
    """A read from the caller's source failed (as opposed to a write into the store)."""

    def __init__(self, error: OSError) -> None:
        self.error = error


def _fill(source: BinaryIO, buffer: memoryview) -> memoryview:
    """Read until `buffer` is full or the source ends; a short result means the end."""
    filled = 0
    while filled < len(buffer):
        try:
            count = source.readinto(buffer[filled:])
        except OSError as error:
            raise _SourceError(error) from None
        if not count:
            break
        filled += count
    return buffer[:filled]


def _write_all(fd: int, chunk: memoryview) -> None:
    """Write `chunk` in pieces of at most WRITE_PIECE bytes."""
    written = 0
    while written < len(chunk):
        written += os.write(fd, chunk[written:written + WRITE_PIECE])


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write all of `data` at `offset`, in pieces of at most WRITE_PIECE bytes (the mount's
    staged copies: FUSE brings writes of up to 1 MiB); returns its length."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        count = os.pwrite(fd, view[written:written + WRITE_PIECE], offset + written)
        if count == 0:
            raise OSError(errno.EIO, "short write to the staged file")
        written += count
    return written


class EarlyWriteback:
    """Starts the writeback of a staged file as it grows: whenever its end passed two
    WRITEBACK_STEPs beyond what was started, the writeback of all but the last step is
    started (`syscalls.start_writeback`). The disk then writes while the copy goes on, and
    the fsync that makes the file durable finds little left; that fsync, not this, is what
    makes it durable (docs/concurrency.md, "Put")."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.started = 0  # the writeback of bytes [0, started) was started

    def grew_to(self, end: int) -> None:
        if end - self.started >= 2 * WRITEBACK_STEP:
            SyncTrace.record("writeback", self.fd)
            syscalls.start_writeback(self.fd, self.started, end - WRITEBACK_STEP - self.started)
            self.started = end - WRITEBACK_STEP


@contextmanager
def _hashing_thread() -> Iterator[ThreadPoolExecutor]:
    """One worker thread for the hash, started at once with SIGINT and SIGTERM blocked, so
    that they go to the main thread (cas/signalmask.py)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="assetfs-hash") as hashing:
        with signalmask.held():
            hashing.submit(int).result()  # starts the thread, which inherits the mask
        yield hashing


_buffers = threading.local()


def _thread_buffers() -> list[memoryview]:
    """Two CHUNK-sized buffers per thread, made once: allocating 8 MiB for each small put
    would cost more than the put itself."""
    if not hasattr(_buffers, "pair"):
        _buffers.pair = [memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK))]
    return _buffers.pair


def _copy_hashing(source: BinaryIO, fd: int) -> tuple[int, str, bytes]:
    """Copy `source` into `fd` and hash it: (size, hash, first bytes).

    Past one chunk (STAGE_CHUNK), the hash of chunk n runs in a second thread while chunk n+1
    is read and written; two buffers take turns, and a buffer is refilled only once its hash
    is done. The writeback of what was written starts as it goes (`EarlyWriteback`).
    """
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    buffers = [buffer[:STAGE_CHUNK] for buffer in _thread_buffers()]
    chunk = _fill(source, buffers[0])
    head = bytes(chunk[:HEAD_SIZE])
    if len(chunk) < STAGE_CHUNK:  # all of it fits in one chunk: nothing to overlap
        hasher.update(chunk)
        _write_all(fd, chunk)
        return len(chunk), hasher.hexdigest(), head
    size = 0
    writeback = EarlyWriteback(fd)
    hashed: list[Future | None] = [None, None]
    with _hashing_thread() as hashing:
        for turn in itertools.count():
            slot = turn % 2
            if turn:
                if hashed[slot] is not None:
                    hashed[slot].result()
                chunk = _fill(source, buffers[slot])
                if not chunk:
                    break
            hashed[slot] = hashing.submit(hasher.update, chunk)
            _write_all(fd, chunk)
            size += len(chunk)
            writeback.grew_to(size)
        for pending in hashed:
            if pending is not None:
                pending.result()
    return size, hasher.hexdigest(), head


def _hash_file(fd: int, size: int) -> str:
    """BLAKE3 of the first `size` bytes of the file `fd`.

    Read with pread, not mapped: a file that another process truncates while it is mapped
    kills the process that reads the mapping (SIGBUS); a read only comes back short, and that
    is SourceChanged. As in `_copy_hashing`, chunk n is hashed in a second thread while chunk
    n+1 is read, two buffers taking turns.
    """
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    buffers = _thread_buffers()
    hashed: list[Future | None] = [None, None]
    offset = 0
    with _hashing_thread() as hashing:
        for turn in itertools.count():
            if offset >= size:
                break
            slot = turn % 2
            if hashed[slot] is not None:
                hashed[slot].result()
            wanted = buffers[slot][:min(CHUNK, size - offset)]
            filled = 0
            while filled < len(wanted):
                count = os.preadv(fd, [wanted[filled:]], offset + filled)
                if count == 0:  # it ended early: truncated meanwhile
                    raise SourceChanged("changed while it was read (it got shorter: truncated); nothing was stored")
                filled += count
            hashed[slot] = hashing.submit(hasher.update, wanted)
            offset += filled
            if turn == 0:
                crash_point("put:hashing-stored")
        for pending in hashed:
            if pending is not None:
                pending.result()
    return hasher.hexdigest()


class SyncTrace:
    """What the store flushed, for the tests that check durability by its syncs:
    ("fsync", inode) or ("syncfs", device), in order, and ("writeback", inode) where staging
    started a file's writeback early. Off (None) unless a test sets it."""

    calls: list[tuple[str, int]] | None = None

    @classmethod
    def record(cls, kind: str, fd: int) -> None:
        if cls.calls is not None:
            status = os.fstat(fd)
            cls.calls.append((kind, status.st_dev if kind == "syncfs" else status.st_ino))


def _syncfs(path: Path) -> None:
    """Flush everything of the filesystem that holds `path` (syncfs(2)): one journal commit
    for any number of files, where an fsync each would cost one commit per file."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        SyncTrace.record("syncfs", fd)
        syscalls.syncfs(fd)
    finally:
        os.close(fd)


class PendingSync:
    """Files and folders whose new content or entries must reach the disk before the catalog
    commit that refers to them. A few are fsynced one by one; more at once, with one syncfs
    where the filesystem's syncfs can be trusted (`use_syncfs`, cas/durability.py): on
    CephFS or NFS it returns without flushing, and each one is fsynced."""

    SYNCFS_ABOVE = 8

    def __init__(self, root: Path, use_syncfs: bool = True) -> None:
        self.root = root
        self.use_syncfs = use_syncfs
        self.paths: set[Path] = set()

    def add(self, path: Path) -> None:
        self.paths.add(path)

    def flush(self) -> None:
        try:
            if self.use_syncfs and len(self.paths) > self.SYNCFS_ABOVE:
                _syncfs(self.root)
            else:
                for path in sorted(self.paths):
                    fsync_path(path)
        except OSError as error:
            raise _storage_error(error, "flushing to disk failed") from None
        self.paths.clear()


def _make_folder(folder: Path, changed: set[Path]) -> None:
    """Create `folder` and its missing parents; each folder that got a new entry joins `changed`."""
    try:
        folder.mkdir()
    except FileExistsError:
        return
    except FileNotFoundError:
        _make_folder(folder.parent, changed)
        try:
            folder.mkdir()
        except FileExistsError:
            return
    changed.add(folder.parent)


def _flush(folders: set[Path], pending: PendingSync | None) -> None:
    """fsync the folders now, or leave them to the caller's `pending`."""
    for folder in sorted(folders):
        if pending is None:
            fsync_path(folder)
        else:
            pending.add(folder)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's fsync makes its new entries durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        SyncTrace.record("fsync", fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(error: OSError, doing: str) -> StoreError:
    if error.errno == errno.ENOSPC:
        return StoreError(f"{doing}: the disk is full; nothing was stored", errno.ENOSPC)
    if error.errno == errno.EDQUOT:
        return StoreError(f"{doing}: disk quota exceeded; nothing was stored", errno.EDQUOT)
    return StoreError(f"{doing}: {error.strerror or error}", error.errno)


def blob_relative(hash_hex: str) -> str:
    """A blob's path below `blobs/`: `ab/cd/abcd…` (a string: the HTTP server builds one
    per request, and nginx's X-Accel-Redirect names it)."""
    return f"{hash_hex[0:2]}/{hash_hex[2:4]}/{hash_hex}"


class BlobTree:
    def __init__(self, root: Path, use_syncfs: bool = True) -> None:
        self.root = root
        self.use_syncfs = use_syncfs  # whether syncfs(2) flushes this filesystem (PendingSync)
        self.blobs = root / "blobs"
        self.objects = root / "objects"
        self.tmp = root / "tmp"

    def create_dirs(self) -> None:
        for path in (self.blobs, self.objects, self.tmp):
            path.mkdir(parents=True, exist_ok=True)

    def blob_path(self, hash_hex: str) -> Path:
        return self.blobs / blob_relative(hash_hex)

    def alias_dir(self, bucket: str, object_id: str) -> Path:
        """Sharded by the id's last four hex digits, which are random in a UUIDv7 (and count up
        within one millisecond), as the blob tree is by the hash: two levels of 256 folders.
        The first digits are its time, the same for every id of the next 35 years."""
        return self.objects / bucket / object_id[-4:-2] / object_id[-2:] / object_id

    def old_alias_dir(self, bucket: str, object_id: str) -> Path:
        """Where alias layout 1 kept the alias (docs/design.md, "Alias layout")."""
        return self.objects / bucket / object_id[0:2] / object_id

    def alias_path(self, bucket: str, object_id: str, filename: str) -> Path:
        return self.alias_dir(bucket, object_id) / filename

    # staging -------------------------------------------------------------------------------

    def stage(self, source: BinaryIO) -> StagedFile:
        """Copy `source` into tmp/, hashing each chunk as it passes (one pass over the data).

        Hashing runs in a second thread while the next chunk is read and written. The staged
        file is not fsynced here: content that turns out to be stored already is thrown away
        without waiting for the disk.
        On any failure the staged file is removed.
        """
        with self._new_staged() as (fd, path):
            try:
                size, hash_hex, head = _copy_hashing(source, fd)
            except _SourceError as failure:
                raise StoreError(f"reading the source failed: {failure.error.strerror}; nothing was stored") from None
            os.fchmod(fd, BLOB_MODE)
        return StagedFile(path=path, hash=hash_hex, size=size, head=head)

    @contextmanager
    def _new_staged(self) -> Iterator[tuple[int, Path]]:
        """A new staging file in tmp/ (its fd and path), closed at the end; on any failure
        also removed, an OSError becoming the store's "staging failed". Its name is chosen
        before it is made, so that its removal is armed before it exists: a SIGTERM raised
        (cas/cli.py's `Terminated`) right after the file was made, even in a thread that
        had the signal blocked (another thread took it), removes it."""
        path = self.tmp / f"{STAGING_PREFIX}{os.urandom(8).hex()}"
        fd = -1
        try:
            fd = _create_staging(path)
            yield fd, path
        except BaseException as error:
            if fd >= 0:
                os.close(fd)
            if not isinstance(error, FileExistsError):  # that one is another file's name
                path.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise _storage_error(error, "staging failed") from None
            raise
        os.close(fd)

    def stage_sparse(self, source: BinaryIO, max_size: int | None = None) -> StagedFile | None:
        """Like `stage`, for a regular file with holes read from its start: its data extents
        are copied and hashed, its holes stay holes in the staged copy (and so in the blob)
        and are hashed as zeros (cas/sparse.py). None for any other source, and for a file
        larger than `max_size` (which `stage` refuses as soon as it read too much): `stage`
        it. SourceChanged when the file changed while it was read."""
        try:
            if source.tell() != 0:
                return None
            source_fd = source.fileno()
            before = os.fstat(source_fd)
        except (AttributeError, OSError, ValueError):
            return None  # a pipe or another stream
        if not stat.S_ISREG(before.st_mode) or before.st_size == 0:
            return None
        if max_size is not None and before.st_size > max_size:
            return None
        size = before.st_size
        try:
            offset = os.lseek(source_fd, 0, os.SEEK_CUR)
            try:
                holes = sparse.has_holes(source_fd, size)
            finally:
                os.lseek(source_fd, offset, os.SEEK_SET)  # lseek(SEEK_DATA) moved it; `stage` reads on from there
        except OSError:
            return None
        if not holes:
            return None
        with self._new_staged() as (fd, path):
            try:
                hash_hex = sparse.copy_hashing(source_fd, fd, size)
                head = os.pread(source_fd, HEAD_SIZE, 0)
                after = os.fstat(source_fd)
            except sparse.ShrankError:
                raise SourceChanged("changed while it was read (it got shorter: truncated); nothing was stored") from None
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise SourceChanged("changed while it was read (written to or truncated); nothing was stored")
            os.fchmod(fd, BLOB_MODE)
        return StagedFile(path=path, hash=hash_hex, size=size, head=head)

    def match_stored(self, fd: int, size: int, candidates: list[str]) -> KnownContent | None:
        """The stored blob, among `candidates` (hashes of blobs of `size` bytes), whose content
        the file `fd` has; None when there is none.

        The file's first bytes are compared with each candidate first; only when one matches
        is the whole file hashed (read, hashed on every core), without copying it anywhere.
        SourceChanged when the file changed meanwhile (its size or mtime, or it ended early).
        """
        before = os.fstat(fd)
        prefix = os.pread(fd, PREFIX_SIZE, 0)
        matching = {hash_hex for hash_hex in candidates if self._blob_prefix(hash_hex, len(prefix)) == prefix}
        if not matching:
            return None
        hash_hex = _hash_file(fd, size)
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise SourceChanged("changed while it was read (written to or truncated); nothing was stored")
        return KnownContent(hash=hash_hex, size=size, head=prefix[:HEAD_SIZE]) if hash_hex in matching else None

    def _blob_prefix(self, hash_hex: str, length: int) -> bytes | None:
        try:
            with open(self.blob_path(hash_hex), "rb") as blob:
                return blob.read(length)
        except OSError:
            return None

    def pending_sync(self) -> PendingSync:
        return PendingSync(self.root, self.use_syncfs)

    def make_durable(self, *staged: StagedFile) -> None:
        """Flush staged files to disk (one fsync each, or one syncfs for many), once."""
        pending = self.pending_sync()
        for one in staged:
            if not one.durable:
                pending.add(one.path)
        pending.flush()
        for one in staged:
            one.durable = True

    def discard(self, content: "StagedFile | KnownContent") -> None:
        """Remove a staged copy (content found stored already has none)."""
        if isinstance(content, StagedFile):
            content.path.unlink(missing_ok=True)

    # blobs ---------------------------------------------------------------------------------

    def blob_size(self, hash_hex: str) -> int | None:
        """The size of the blob file, or None when it is missing."""
        try:
            return self.blob_path(hash_hex).stat().st_size
        except FileNotFoundError:
            return None

    def install_blob(self, staged: StagedFile, pending: PendingSync | None = None) -> bool:
        """Make the staged (durable) file the blob for its hash. Caller holds the blob lock.

        Returns True when the blob file was created or repaired, False when a good one was
        there already. A blob of the wrong size is damage: the staged copy replaces it.
        The shard folder is fsynced now, or added to `pending` for the caller to flush.
        """
        target = self.blob_path(staged.hash)
        try:
            existing = target.stat().st_size
        except FileNotFoundError:
            existing = None
        if existing == staged.size:
            return False
        try:
            changed = {target.parent}
            _make_folder(target.parent, changed)
            os.rename(staged.path, target)  # no other writer: the caller holds the blob lock
            _flush(changed, pending)
        except OSError as error:
            raise _storage_error(error, "installing the blob failed") from None
        return True

    def link_blob(self, staged: StagedFile, pending: PendingSync) -> None:
        """A link to the staged (durable) file as the blob for its hash, if there is no file
        of that name; the caller holds the blob lock (cas/ahead.py). The staged file stays,
        for the commit to install again should a collector remove this one before it."""
        target = self.blob_path(staged.hash)
        try:
            changed = {target.parent}
            _make_folder(target.parent, changed)
            os.link(staged.path, target)
        except FileExistsError:
            return  # stored meanwhile, or damaged: the commit looks at it under the lock
        except OSError as error:
            raise _storage_error(error, "installing the blob failed") from None
        _flush(changed, pending)

    def is_installed(self, staged: StagedFile) -> bool:
        """Whether the blob file is the staged file itself (`link_blob` made it)."""
        try:
            return os.path.samefile(staged.path, self.blob_path(staged.hash))
        except FileNotFoundError:
            return False

    def remove_blob(self, hash_hex: str) -> bool:
        """Unlink a blob file; the caller holds the blob lock and has checked nothing uses it."""
        try:
            self.blob_path(hash_hex).unlink()
        except FileNotFoundError:
            return False
        return True

    # aliases -------------------------------------------------------------------------------

    def make_alias(self, hash_hex: str, bucket: str, object_id: str, filename: str,
                   pending: PendingSync | None = None, blob_missing_ok: bool = False) -> str | None:
        """Create the object's alias: a hardlink to its blob, or a copy when links run out.

        Returns "link" or "copy"; None when the blob is missing and `blob_missing_ok`. The
        folders that got new entries are fsynced (now, or by the caller through `pending`),
        so a committed object's alias survives a crash. An alias made before (ahead of the
        transaction, and flushed then) is left as it is.
        """
        blob = self.blob_path(hash_hex)
        alias = self.alias_path(bucket, object_id, filename)
        try:
            changed = {alias.parent}
            _make_folder(alias.parent, changed)
            try:
                os.link(blob, alias)
                kind = "link"
            except FileExistsError:
                return "link" if os.path.samefile(blob, alias) else "copy"
            except FileNotFoundError:
                if blob_missing_ok and not blob.exists():
                    return None
                raise
            except OSError as error:
                if error.errno != errno.EMLINK:
                    raise
                self.copy_blob_to(blob, alias)
                kind = "copy"
            _flush(changed, pending)
        except OSError as error:
            raise _storage_error(error, "creating the object's alias failed") from None
        return kind

    def copy_blob_to(self, blob: Path, target: Path) -> None:
        """A durable read-only copy of a blob at `target`: reflinked where the filesystem can."""
        fd, name = _mkstemp(self.tmp)
        try:
            with open(blob, "rb") as source:
                try:
                    fcntl.ioctl(fd, FICLONE, source.fileno())
                except OSError:  # a sparse blob's copy keeps its holes
                    sparse.copy_file(source.fileno(), fd, os.fstat(source.fileno()).st_size)
            os.fchmod(fd, BLOB_MODE)
            SyncTrace.record("fsync", fd)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.rename(name, target)
        finally:
            if fd >= 0:
                os.close(fd)
            Path(name).unlink(missing_ok=True)

    def relink_alias(self, hash_hex: str, bucket: str, object_id: str, filename: str) -> bool:
        """Replace the object's alias (a copy, or a wrong file) with a hardlink to its blob,
        atomically: the link is made under a staging name in tmp/ and renamed over the alias,
        so the alias's name always shows the content. False, leaving the alias as it is, when
        the blob has run out of links (EMLINK). The caller holds the blob lock."""
        blob = self.blob_path(hash_hex)
        alias = self.alias_path(bucket, object_id, filename)
        temporary = self.tmp / f"{STAGING_PREFIX}relink-{object_id}"
        try:
            changed = {alias.parent}
            _make_folder(alias.parent, changed)
            temporary.unlink(missing_ok=True)
            try:
                os.link(blob, temporary)
            except OSError as error:
                if error.errno == errno.EMLINK:
                    return False
                raise
            os.rename(temporary, alias)
            _flush(changed, None)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise _storage_error(error, "relinking the object's alias failed") from None
        return True

    @staticmethod
    def links_left(path: Path) -> bool:
        """Whether the file at `path` can take one more hardlink (its filesystem's LINK_MAX)."""
        try:
            limit = os.pathconf(path, "PC_LINK_MAX")
        except (OSError, ValueError):
            return True  # no limit known: a copy is never needed
        return path.stat().st_nlink < limit

    def remove_alias(self, bucket: str, object_id: str) -> None:
        """Remove an object's alias folder and whatever it holds (it holds one file). The old
        place first: the layout migration moves a folder from there to the new one, never back,
        so looking there second finds a folder it moved meanwhile."""
        _remove_folder(self.old_alias_dir(bucket, object_id))
        _remove_folder(self.alias_dir(bucket, object_id))

    def remove_old_alias(self, bucket: str, object_id: str) -> None:
        """Remove an alias folder of layout 1 (one at the new place replaced it)."""
        _remove_folder(self.old_alias_dir(bucket, object_id))

    def move_old_alias(self, bucket: str, object_id: str, pending: PendingSync) -> bool:
        """Move an alias folder of layout 1 to its place in layout 2, in one rename (a kill at
        any instant leaves it at one place or the other, whole). When the new place holds an
        alias already, the old one is a leftover and is removed. False when there was nothing
        at the old place (moved or purged meanwhile). The folders that changed join `pending`."""
        old, new = self.old_alias_dir(bucket, object_id), self.alias_dir(bucket, object_id)
        changed = {new.parent, old.parent}
        try:
            _make_folder(new.parent, changed)
            os.rename(old, new)  # over an empty folder too (a put killed before it linked)
        except FileNotFoundError:
            return False
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise _storage_error(error, f"moving the alias of {object_id} failed") from None
            _remove_folder(old)
        crash_point("layout:alias-moved")
        _flush(changed, pending)
        return True


def _remove_folder(folder: Path) -> None:
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        entry.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # something unexpected is in it (or it went meanwhile): left for fsck to report


STAGING_PREFIX = "stage-"  # a named staging file (a mount's journal folder holds them too)


def _mkstemp(directory: Path) -> tuple[int, str]:
    try:
        return tempfile.mkstemp(dir=directory, prefix=STAGING_PREFIX)
    except OSError as error:
        raise _storage_error(error, "cannot create a staging file") from None


def _create_staging(path: Path) -> int:
    """Create the staging file `path` (new, the owner's alone) and open it for reading and writing."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def seal_staged(path: Path, hash_hex: str | None = None) -> StagedFile:
    """Hash a file that was written in tmp/ (by the mount) and make it read-only, ready to be
    installed as a blob like one that `BlobTree.stage` produced. Its writer has closed it.
    `hash_hex`: the content's hash when the writer computed it already (then it is not read)."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if hash_hex is None and sparse.has_holes(stream.fileno(), size) and size:
                hash_hex = sparse.hash_file(stream.fileno(), size)  # a hole is hashed as zeros, not read
            elif hash_hex is None:
                hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
                if size:
                    hasher.update_mmap(path)
                hash_hex = hasher.hexdigest()
            head = stream.read(HEAD_SIZE)
        os.chmod(path, BLOB_MODE)
    except sparse.ShrankError:
        raise StoreError("the staged file got shorter while it was hashed") from None
    except OSError as error:
        raise _storage_error(error, "hashing the staged file failed") from None
    return StagedFile(path=path, hash=hash_hex, size=size, head=head)


def new_staging_file(tmp: Path) -> tuple[int, Path | None]:
    """An empty staging file in tmp/, open for reading and writing: (fd, path). Where the
    filesystem can, it has no name (O_TMPFILE, path None): creating it touches no folder,
    and a crash leaves nothing behind; `link_staging_file` names it once it is needed. Where
    O_TMPFILE fails (ceph-fuse: EOPNOTSUPP; others EISDIR or EINVAL) it is a named
    `stage-*` file."""
    try:
        if faults.failing("tmpfile"):
            raise OSError(errno.EOPNOTSUPP, "O_TMPFILE refused (ASSETFS_FAIL=tmpfile)")
        return os.open(tmp, os.O_TMPFILE | os.O_RDWR, 0o600), None
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise _storage_error(error, "cannot create a staging file") from None
    fd, name = _mkstemp(tmp)
    return fd, Path(name)


def link_staging_file(fd: int, path: Path | None, folder_fd: int, name: str) -> None:
    """Give a staging file from `new_staging_file` the name `name` in the folder open as
    `folder_fd` (a named one loses its old name). With a folder fd, os.link is linkat with
    AT_SYMLINK_FOLLOW, which links the file behind /proc/self/fd/N rather than that link."""
    if path is None:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder_fd)
    else:
        os.rename(path, name, dst_dir_fd=folder_fd)
