"""The Python API of an assetfs store: put, get, open, delete, restore, hold, list.

Synchronous and thread-safe; trio code calls it through worker threads. The order of
writes and the blob lock are described in docs/concurrency.md, which this module follows.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cas import ahead, names, privacy, readers, reserve, storeid, superseded
from cas.blobtree import HEAD_SIZE, BlobTree, KnownContent, PendingSync, SourceChanged, StagedFile
from cas.catalog import Catalog, Transaction, open_catalog
from cas.catalog.base import Row, first_line, in_list
from cas.catalog.migrate import check_version, current_version, migrate
from cas.catalog.schema import SCHEMA_VERSION
from cas.config import CONFIG_NAME, DEFAULT_SCHEMA, Config, check_schema_name, load_config, render_config
from cas.content_type import detect_content_type, load_in_background
from cas.durability import syncfs_trusted
from cas.errors import BadInput, NotFound, StoreError, TooLarge
from cas.faults import crash_point
from cas.ids import new_object_id, parse_object_id
from cas.model import ObjectInfo, PutResult
from cas.sizes import format_size
from cas.validate import check_bucket, check_content_type, check_expiry, check_filename, check_metadata, split_name

log = logging.getLogger("assetfs.store")

STORE_PARTS = (CONFIG_NAME, "blobs", "objects", "tmp", "catalog.db", "catalog.db-wal", "catalog.db-shm",
               "catalog.db-writer", "catalog.db-waiting", reserve.RESERVE_NAME, storeid.TREE_FILE)
ZERO_ID = "00000000-0000-0000-0000-000000000000"
MAX_OWNER_LENGTH = 255
KNOWN_CONTENT_MIN_SIZE = 1024 * 1024  # smaller files are staged at once: looking first costs more


BATCH_FILES = 256
BATCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class PutRequest:
    """One file of a `put_many`: where its content comes from, and what to call it."""

    source: str | Path | BinaryIO
    name: str | None = None  # the name in the bucket's tree, if any
    filename: str | None = None  # the alias's file name (default: from the name or the source)


@dataclass(frozen=True)
class _PutSettings:
    """What every file of one put_many shares."""

    bucket: str
    metadata: dict[str, str]
    content_type: str | None
    expires_at: float | None
    owner: names.Owner


@dataclass(frozen=True)
class _Prepared:
    """A checked request with its content staged (or found stored), waiting for its commit."""

    content: StagedFile | KnownContent
    parts: list[str] | None
    filename: str
    content_type: str
    object_id: str  # chosen before the transaction, so a retried one reuses the alias


@dataclass(frozen=True)
class StagedWrite:
    """A file written through the mount: its staged copy (sealed by `blobtree.seal_staged`),
    the named-tree file node whose content it becomes, the node's mtime when it was closed
    (kept unless the node's attributes changed after that), the content version it becomes,
    and the versions of the node it may replace (those its writer started from; None: any).
    A node at another version was changed by someone else meanwhile: the write becomes a
    conflict copy beside it (docs/concurrency.md, "Many writers"). A write whose node was
    deleted meanwhile goes to the trash of its bucket, without a name."""

    staged: StagedFile
    node: int
    mtime: float
    version: str
    bases: frozenset[str | None] | None
    bucket: str | None = None  # the node's, as the mount knew it: for a node deleted before the commit
    supersedes: str | None = None  # the object its writer's previous commit of the node created
    # (not deduplicated onto): freed at once if this write replaces it soon (cas/superseded.py)


def _node_place(tx: Transaction, node: int) -> tuple[str, str] | None:
    """A named-tree node's bucket and file name, or None when it has no name left."""
    attrs, filename = names.node_attrs(tx, node), names.node_name(tx, node)
    return None if attrs is None or filename is None else (attrs["bucket"], filename)


@dataclass(frozen=True)
class _Placement:
    """Where a file written through the mount goes at its commit: onto its node (the node is
    still at a version its writer started from), beside it as a conflict copy (someone else
    changed it meanwhile), or into the trash under the node's last name (it has none left)."""

    kind: str  # "node", "conflict" or "trash"
    filename: str  # the object's file name (its alias's)
    node: Row | None  # the node's row, read in the commit's transaction (None: deleted)

    @classmethod
    def of(cls, node: Row | None, filename: str | None, write: StagedWrite, now: float) -> "_Placement":
        if node is None:
            return cls("trash", f"untitled-{write.node}", node)
        if filename is None:
            return cls("trash", PurePosixPath(node["last_path"] or "untitled").name, node)
        if write.bases is not None and node["version"] not in write.bases:
            return cls("conflict", names.conflict_name(filename, now), node)
        return cls("node", filename, node)

    def bind(self, tx: Transaction, write: StagedWrite, result: PutResult, grace: float, now: float) -> PutResult:
        object_id = result.object.id
        node = self.node
        if self.kind == "node":
            # an mtime set explicitly after the file was closed (rsync sets it then) wins over
            # the close's; other changes since (a rename, chmod) leave the close's
            # (docs/concurrency.md, "Times")
            set_at = node["mtime_set_at"]
            mtime = node["mtime"] if set_at is not None and set_at > write.mtime else write.mtime
            names.rebind_node(tx, write.node, object_id, mtime, now, write.version)
            return result
        if self.kind == "conflict":
            path = names.bind_conflict_copy(tx, write.node, object_id, self.filename, write.mtime, now)
            log.warning("conflict: node %d changed since its writer opened it; this version is kept as %s/%s",
                        write.node, result.object.bucket, path)
            return replace(result, name=path, conflict=True)
        if not result.deduplicated:  # its content is live already otherwise
            if node is not None:  # restored under the name it had; without a node, by id only
                record = names.name_record(node, node["last_path"] or self.filename)
                tx.execute("update objects set trashed_names = :names where id = :id",
                           {"names": json.dumps([record]), "id": object_id})
            trash_object(tx, object_id, now, grace)
        info = ObjectInfo.from_row(tx.one("select * from objects where id = :id", {"id": object_id}))
        return replace(result, object=info, trashed=True)


def _refuse_catalog_of_another_store(root: Path, catalog: Catalog) -> None:
    """`init` of a new folder on a catalog that belongs to a store already: refused, before
    anything is written into the folder (a second server shares the store's folder instead)."""
    known = storeid.catalog_belongs_elsewhere(catalog)
    if known is not None:
        catalog.close()
        raise storeid.WrongStore(
            f"the catalog {catalog.describe()} belongs to store {known} already; another server of that store "
            f"uses its shared folder (mount the shared filesystem at {root}) rather than a new one")


INIT_ROOM = 1024 * 1024  # bytes `init` wants free: the catalog's first pages and its WAL (its reserve
# for a full disk is made only when there is room for it too: cas/reserve.py)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_room(root: Path) -> None:
    """Refuse `init` before anything is made when its filesystem has no room for a store."""
    need = INIT_ROOM
    try:
        free = reserve.free_bytes(_existing_parent(root))
    except OSError:
        return  # making the folder says what is wrong
    if free < need:
        raise StoreError(f"cannot create the store at {root}: only {format_size(free)} free on its filesystem, it needs "
                         f"{format_size(need)}; nothing was made", errno.ENOSPC)


def _undo_init(root: Path, created: bool, before: set[str]) -> None:
    """Remove what a failed `init` made: the folder it created, or what it added to one."""
    with suppress(OSError):
        if created:
            shutil.rmtree(root)
            return
        for name in set(os.listdir(root)) - before:
            path = root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _too_large(bucket: str, max_size: int) -> TooLarge:
    return TooLarge(f"larger than bucket {bucket}'s max_size ({format_size(max_size)}); nothing was stored")


class _SizeLimited:
    """A source that fails with TooLarge once more than `limit` bytes were read from it."""

    def __init__(self, source: BinaryIO, limit: int, bucket: str) -> None:
        self.source, self.limit, self.bucket, self.read = source, limit, bucket, 0

    def readinto(self, buffer: memoryview) -> int:
        count = self.source.readinto(buffer)
        self.read += count or 0
        if self.read > self.limit:
            raise _too_large(self.bucket, self.limit)
        return count


class _ContentGone(Exception):
    """The blob a put without a staged copy relied on was removed before the put committed."""


class Store:
    def __init__(self, root: Path, config: Config, catalog: Catalog) -> None:
        self.root = root
        self.config = config
        self.catalog = catalog
        self.read_only = False  # opened for the read commands: nothing may be written (`open`)
        self.tree = BlobTree(root, use_syncfs=syncfs_trusted(config.storage.syncfs, root))

    # opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | Path, read_only: bool = False, check_schema: bool = True,
             check_identity: bool = True) -> "Store":
        """Open the store at `root`. Opening writes nothing to the catalog: a catalog whose
        schema is not this assetfs's is refused (`SchemaMismatch`, which says whether to run
        `assetfs migrate` or upgrade assetfs) unless `check_schema` is off (`migrate` itself).

        `read_only` (the read commands): nothing is written, neither to the catalog (its
        transactions are read-only) nor to the store's files, so a user or database role that
        may only read can use it (docs/upgrade.md). Only on a full disk does a read give the
        SQLite store's reserve back, as every command does (cas/reserve.py).

        The blob tree and the catalog must carry one store id (cas/storeid.py); only `assetfs
        load`, which gives an empty catalog the id of the store it loads, and `migrate` (whose
        catalog may predate the id) open without that check."""
        root = Path(root).absolute()
        if not root.is_dir():
            raise BadInput(f"{root} is not an assetfs store (no such folder); create one with 'assetfs init'")
        config = load_config(root)
        tree = BlobTree(root)
        if not (tree.blobs.is_dir() and tree.objects.is_dir()):
            raise BadInput(f"{root} is not an assetfs store (blobs/ or objects/ is missing)")
        if config.database_url is None:  # on a full disk, SQLite needs room even to read:
            reserve.release_if_low(root, config.disk_reserve)  # the one file a read may remove
        if not read_only:
            tree.tmp.mkdir(exist_ok=True)
        catalog = open_catalog(root, config.database_url, config.write_lock_timeout, schema=config.database_schema,
                               read_only=read_only, attach=config.attach)
        store = cls(root, config, catalog)
        store.read_only = read_only
        try:
            if check_schema:
                check_version(catalog, store.command())
                if check_identity:
                    storeid.check(root, catalog, write=not read_only)
        except BaseException:
            catalog.close()  # refused: nothing written (no reserve kept either)
            raise
        return store

    def command(self) -> str:
        """How to name this store on the command line, in the fixes messages suggest."""
        return f"assetfs --store {shlex.quote(str(self.root))}"

    @classmethod
    def init(cls, root: str | Path, database_url: str | None = None, group: str | None = None,
             database_schema: str | None = None) -> tuple["Store", bool]:
        """Create a store at `root`, or open the one there. Returns (store, created).

        Creates the catalog's schema (and on PostgreSQL its `database_schema`, default
        `assetfs`) when it has none; an existing catalog of another version is refused, as
        `open` does (`assetfs migrate` upgrades it). The new store is its owner's alone, or
        also readable by `group` (cas/privacy.py)."""
        root = Path(root).absolute()
        gid = None if group is None else privacy.group_id(group)
        if database_schema is not None:
            check_schema_name(database_schema, "--database-schema")
            if not database_url and not (root / CONFIG_NAME).exists():
                raise BadInput("--database-schema is for a PostgreSQL catalog: give --database-url too")
        if (root / CONFIG_NAME).exists():
            store = cls.open(root, check_schema=False)
            try:
                if database_url and store.config.database_url != database_url or (
                        database_schema and store.config.database_schema != database_schema):
                    raise BadInput(f"{root} is already a store with another catalog; edit {CONFIG_NAME} to move it")
                if gid is not None and not privacy.shared_with(root, gid):
                    raise BadInput(f"{root} is already a store, not shared with group {group}; see docs/security.md")
                store.create_schema()
                storeid.check(root, store.catalog)
            except BaseException:
                store.close()
                raise
            return store, False
        if root.exists() and not root.is_dir():
            raise BadInput(f"{root} exists and is not a folder")
        if root.is_dir() and any(entry.name not in STORE_PARTS for entry in root.iterdir()):
            raise BadInput(f"{root} is not empty and is not an assetfs store; choose an empty or new folder")
        created = not root.exists()
        before = set() if created else set(os.listdir(root))
        _check_room(root)
        try:
            return cls._create(root, database_url, database_schema or DEFAULT_SCHEMA, gid), True
        except BaseException as error:
            _undo_init(root, created, before)  # nothing half-made stays: `init` can be run again
            if not isinstance(error, (OSError, sqlite3.Error)):
                raise
            room = format_size(reserve.free_bytes(_existing_parent(root)))
            why = error.strerror if isinstance(error, OSError) else first_line(error)
            raise StoreError(f"cannot create the store at {root}: {why} ({room} free there); nothing was left "
                             "behind", getattr(error, "errno", None)) from None

    @classmethod
    def _create(cls, root: Path, database_url: str | None, schema: str, gid: int | None) -> "Store":
        """`init` of a new store in `root` (absent, or empty but for parts of a store)."""
        root.mkdir(parents=True, exist_ok=True)
        privacy.make_root(root, gid)
        files, folders = privacy.file_mode(root), privacy.dir_mode(root)
        if not database_url:  # SQLite makes its -wal and -shm files with the database's mode
            privacy.create_file(root / "catalog.db", files)
        catalog = open_catalog(root, database_url, schema=schema)
        try:
            crash_point("init:catalog")
            if current_version(catalog) == SCHEMA_VERSION:
                _refuse_catalog_of_another_store(root, catalog)
            tree = BlobTree(root)
            tree.create_dirs()
            for folder in (tree.blobs, tree.objects, tree.tmp):
                os.chmod(folder, folders)
            privacy.create_file(root / CONFIG_NAME, files, render_config(database_url, schema).encode())
            store = cls(root, load_config(root), catalog)
            store.create_schema()
            storeid.check(root, catalog)
        except BaseException:
            catalog.close()
            raise
        store._keep_reserve()
        return store

    def create_schema(self) -> None:
        """`init`, `load`: a catalog without tables gets the whole schema (unless an older assetfs
        made them in another schema: that is reported, not hidden by an empty catalog); any
        other must be this assetfs's version already (`assetfs migrate` upgrades one)."""
        if current_version(self.catalog) == 0 and self.catalog.tables_elsewhere() is None:
            migrate(self.catalog)
        check_version(self.catalog, self.command())

    def close(self) -> None:
        self.catalog.close()
        self._keep_reserve()

    def _keep_reserve(self) -> None:
        if self.config.database_url is None and not self.read_only:
            reserve.keep(self.root, self.config.disk_reserve)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # putting -------------------------------------------------------------------------------

    def put(
        self,
        bucket: str,
        source: str | Path | BinaryIO,
        name: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        expires_at: float | None = None,
        filename: str | None = None,
        owner: names.Owner | None = None,
    ) -> PutResult:
        """Store the content of `source` (a path or a binary stream) as an object of `bucket`.

        With the bucket's `dedupe` on, a live object of the bucket with the same content is
        returned instead of a new one. With `name`, `<bucket>/<name>` refers to the object
        afterwards. Every argument is checked before anything is written.
        """
        [result] = self.put_many(bucket, [PutRequest(source, name, filename)], content_type=content_type,
                                 metadata=metadata, expires_at=expires_at, owner=owner)
        return result

    def put_many(
        self,
        bucket: str,
        requests: Iterable[PutRequest],
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        expires_at: float | None = None,
        owner: names.Owner | None = None,
        on_result: Callable[[PutResult], None] | None = None,
    ) -> list[PutResult]:
        """Store several files in `bucket`, as `put` does each; results in request order.

        Files are committed in batches (up to BATCH_FILES files or BATCH_BYTES bytes): one
        flush to disk and one transaction per batch instead of one per file. A large file
        whose content is stored already is committed on its own, without being copied.
        `on_result` hears of each result as its batch commits. A bad request stops the run
        with an error: the batches committed before it stay, nothing after it is stored.
        """
        check_bucket(bucket)
        settings = _PutSettings(
            bucket=bucket,
            metadata=dict(check_metadata({} if metadata is None else metadata)),
            content_type=None if content_type is None else check_content_type(content_type),
            expires_at=None if expires_at is None else check_expiry(expires_at, time.time()),
            owner=owner or names.Owner.current(),
        )
        if settings.content_type is None:
            load_in_background()  # libmagic loads while the first file is copied
        results: list[PutResult] = []

        def commit(batch: list[_Prepared]) -> None:
            for result in self._commit_batch(batch, settings):
                results.append(result)
                if on_result is not None:
                    on_result(result)
            batch.clear()

        batch: list[_Prepared] = []
        try:
            for request in requests:
                prepared = self._prepare(request, settings)
                if isinstance(prepared.content, KnownContent):
                    commit(batch)
                    try:
                        commit([prepared])
                        continue
                    except _ContentGone:  # swept meanwhile: store it after all
                        prepared = self._prepare(request, settings, look_for_stored=False)
                batch.append(prepared)
                if len(batch) >= BATCH_FILES or sum(item.content.size for item in batch) >= BATCH_BYTES:
                    commit(batch)
            commit(batch)
        finally:
            for prepared in batch:
                self.tree.discard(prepared.content)
        return results

    def _prepare(self, request: PutRequest, settings: "_PutSettings", look_for_stored: bool = True) -> "_Prepared":
        """Check one request and stage its content (or find it stored already)."""
        parts = split_name(request.name) if request.name is not None else None
        with _opened(request.source) as (stream, source_name):
            filename = request.filename or (parts[-1] if parts else source_name) or "upload"
            check_filename(filename)
            if parts:
                self.catalog.run(lambda tx: names.check_target(tx, settings.bucket, parts), write=False)
            max_size = self.config.bucket(settings.bucket).max_size
            try:
                content = self._stored_copy_of(stream) if look_for_stored else None
                if content is None:  # a file with holes keeps them
                    content = self.tree.stage_sparse(stream, max_size)
            except SourceChanged as error:
                raise SourceChanged(f"{request.filename or source_name or 'the source'} {error}") from None
            if content is None:
                limited = stream if max_size is None else _SizeLimited(stream, max_size, settings.bucket)
                content = self.tree.stage(limited)
            try:  # until the caller holds it in its batch, a staged copy is this function's to remove
                if isinstance(content, StagedFile):
                    crash_point("put:staged")
                if max_size is not None and content.size > max_size:  # found stored
                    raise _too_large(settings.bucket, max_size)
                content_type = settings.content_type or detect_content_type(content.head, filename)
                return _Prepared(content, parts, filename, content_type, new_object_id())
            except BaseException:  # SIGTERM too (cas/cli.py)
                self.tree.discard(content)
                raise

    def _commit_batch(self, batch: list["_Prepared"], settings: "_PutSettings") -> list[PutResult]:
        """Flush the batch's new content, then commit its objects in one transaction, taking
        the blob locks in hash order (so two batches never wait on each other in a cycle)."""
        if not batch:
            return []
        try:
            new = [item.content for item in batch
                   if isinstance(item.content, StagedFile) and self.tree.blob_size(item.content.hash) != item.content.size]
            if new:
                self.tree.make_durable(*new)  # before taking the lock: it may take a while
                crash_point("put:durable")
            pending = self.tree.pending_sync()  # shared by retries: what one attempt wrote is flushed too

            def commit(tx: Transaction) -> list[PutResult]:
                done = {}
                for index, item in sorted(enumerate(batch), key=lambda pair: pair[1].content.hash):
                    done[index] = self._commit_put(
                        tx, settings.bucket, item.content, item.object_id, item.parts, item.content_type,
                        settings.metadata, settings.expires_at, item.filename, settings.owner, pending)
                pending.flush()
                crash_point("put:before-commit")
                return [done[index] for index in range(len(batch))]

            results = self.catalog.run(commit)
            crash_point("put:committed")
            return results
        finally:
            for item in batch:
                self.tree.discard(item.content)

    def _live_copy(self, tx: Transaction, bucket: str, hash_hex: str, expires_at: float | None) -> Row | None:
        """The live object of `bucket` with this content that a put returns instead of a new
        one, if the bucket deduplicates: the oldest that lives at least as long as asked (one
        that expires sooner is no substitute)."""
        if not self.config.bucket(bucket).dedupe:
            return None
        lives_long_enough = "expires_at is null" + ("" if expires_at is None else " or expires_at >= :expires_at")
        return tx.one(
            "select * from objects where bucket = :bucket and hash = :hash and deleted_at is null "
            f"and ({lives_long_enough}) order by id limit 1",
            {"bucket": bucket, "hash": hash_hex, "expires_at": expires_at},
        )

    def _stored_copy_of(self, stream: BinaryIO) -> KnownContent | None:
        """For a large regular file read from its start: the stored blob with its content, if
        one exists. Content already stored is then only hashed, never copied (docs/concurrency.md)."""
        try:
            if stream.tell() != 0:
                return None
            fd = stream.fileno()
            size = os.fstat(fd).st_size
        except (AttributeError, OSError, ValueError):
            return None  # a pipe or another stream: no size to match, no going back
        if size < KNOWN_CONTENT_MIN_SIZE:
            return None
        candidates = self.catalog.run(
            lambda tx: [row["hash"] for row in tx.all(
                "select hash from blobs where size = :size limit :limit", {"size": size, "limit": 16})],
            write=False,
        )
        return self.tree.match_stored(fd, size, candidates) if candidates else None

    def _commit_put(
        self, tx: Transaction, bucket: str, staged: StagedFile | KnownContent, object_id: str,
        parts: list[str] | None, content_type: str, metadata: dict[str, str], expires_at: float | None,
        filename: str, owner: names.Owner, pending: PendingSync | None = None,
    ) -> PutResult:
        """The put's transaction. With KnownContent (nothing staged), a blob that is no longer
        there raises _ContentGone, and the caller stages the content after all."""
        tx.lock_blob(staged.hash)
        now = time.time()
        names.ensure_bucket(tx, bucket, now, owner)
        tx.execute(
            "insert into blobs (hash, size, created_at) values (:hash, :size, :now) on conflict (hash) do nothing",
            {"hash": staged.hash, "size": staged.size, "now": now},
        )
        existing = self._live_copy(tx, bucket, staged.hash, expires_at)
        if self.tree.blob_size(staged.hash) != staged.size:  # not made ahead, or swept since
            if isinstance(staged, KnownContent):
                raise _ContentGone()
            self.tree.make_durable(staged)
            self.tree.install_blob(staged, pending)
            crash_point("put:blob-installed")
            self._relink_aliases(tx, staged.hash)
            self.tree.remove_alias(bucket, object_id)  # made ahead as a link to the blob swept since
        elif isinstance(staged, StagedFile) and self.tree.is_installed(staged):  # linked ahead, by this put
            self._relink_aliases(tx, staged.hash)
        if existing is None:
            self.tree.make_alias(staged.hash, bucket, object_id, filename, pending)  # or made ahead (the mount's)
            crash_point("put:alias-made")
            tx.execute(
                "insert into objects (id, bucket, hash, size, content_type, filename, metadata, created_at, "
                "touched_at, expires_at) values (:id, :bucket, :hash, :size, :content_type, :filename, :metadata, "
                ":now, :now, :expires_at)",
                {"id": object_id, "bucket": bucket, "hash": staged.hash, "size": staged.size,
                 "content_type": content_type, "filename": filename, "metadata": json.dumps(metadata),
                 "now": now, "expires_at": expires_at},
            )
        else:
            object_id = existing["id"]
            _touch(tx, object_id, now)  # its id goes to another caller now (cas/superseded.py)
        if parts:
            names.bind(tx, bucket, parts, object_id, now, owner)  # the object it replaces lets go of the name
        row = tx.one("select * from objects where id = :id", {"id": object_id})
        info = ObjectInfo.from_row(row, names.names_of(tx, [object_id])[object_id])
        return PutResult(object=info, deduplicated=existing is not None, name="/".join(parts) if parts else None)

    def _relink_aliases(self, tx: Transaction, hash_hex: str) -> None:
        """After a blob was (re)installed, point the aliases that were links to a lost file at
        the new one."""
        blob = self.tree.blob_path(hash_hex)
        for row in tx.all("select id, bucket, filename from objects where hash = :hash", {"hash": hash_hex}):
            alias = self.tree.alias_path(row["bucket"], row["id"], row["filename"])
            try:
                if os.path.samefile(alias, blob):
                    continue
            except FileNotFoundError:
                pass
            alias.unlink(missing_ok=True)
            self.tree.make_alias(hash_hex, row["bucket"], row["id"], row["filename"])
            self.tree.remove_old_alias(row["bucket"], row["id"])

    def put_staged_many(self, writes: list[StagedWrite], owner: names.Owner | None = None) -> list[PutResult | None]:
        """Commit files the mount wrote (docs/concurrency.md, "Write-behind"): each becomes an
        object of its node's bucket, named like the node, and the content of that node.

        One flush and one transaction for all, blob locks in hash order, otherwise the order
        of `put`. A write whose node has no name left (removed while its file was open or
        waiting) stores nothing: its result is None. The staged files are consumed (installed
        or removed) whatever happens; the caller keeps its own link to retry with.
        """
        owner = owner or names.Owner.current()
        plans: dict[int, ahead.PlannedObject] = {}  # by index in `writes`: each object to create
        renamed: list[ahead.PlannedObject] = []  # plans of files renamed before the commit
        freed: list[superseded.Freed] = []  # the writer's own versions these commits replaced
        committed: set[str] = set()
        try:
            new = [write.staged for write in writes if self.tree.blob_size(write.staged.hash) != write.staged.size]
            if new:
                self.tree.make_durable(*new)
            plans, made_ahead = self.catalog.run(lambda tx: self._plan_staged(tx, writes), write=False)
            ahead.make_files(self.catalog, self.tree, made_ahead)
            content_types = {index: detect_content_type(writes[index].staged.head, plan.filename)
                             for index, plan in plans.items()}
            pending = self.tree.pending_sync()  # shared by retries: what one attempt wrote is flushed too
            # a read-only mount (not in `mounts`) may have a superseded version open: none is freed
            reading = any(write.supersedes for write in writes) and readers.present(self.root, self.catalog)

            def commit(tx: Transaction) -> list[PutResult | None]:
                results: list[PutResult | None] = [None] * len(writes)
                freed.clear()  # of an attempt that was rolled back
                for index, write in sorted(enumerate(writes), key=lambda pair: pair[1].staged.hash):
                    node = names.node_attrs(tx, write.node)
                    if node is None and write.bucket is None:
                        continue  # deleted with its names, by a mount of an older version: nothing says where
                    now = time.time()
                    place = _Placement.of(node, None if node is None else names.node_name(tx, write.node), write, now)
                    bucket = write.bucket if node is None else node["bucket"]
                    plan = plans.get(index)
                    if plan is None or (plan.bucket, plan.filename) != (bucket, place.filename):
                        # renamed since, or placed elsewhere: an object of its own, its alias made
                        # under the lock (kept for retries)
                        if plan is not None:
                            renamed.append(plan)
                        plan = plans[index] = ahead.PlannedObject(write.staged, bucket, new_object_id(),
                                                                  place.filename)
                        content_types[index] = detect_content_type(write.staged.head, place.filename)
                    result = self._commit_put(tx, plan.bucket, write.staged, plan.object_id, None,
                                              content_types[index], {}, None, plan.filename, owner, pending)
                    own = None if place.kind != "node" or result.object.id == node["object_id"] else \
                        superseded.own_version(tx, self.config, node, write.version,
                                               None if reading else write.supersedes, now)
                    results[index] = place.bind(tx, write, result, self.config.bucket(plan.bucket).grace, now)
                    if own is not None and (gone := superseded.free(tx, own)) is not None:
                        freed.append(gone)
                pending.flush()
                return results

            # the mount's names and user puts go first; the commit does not flush the catalog
            # while it holds the write lock (on SQLite, the mount's creates wait for it): the
            # flush follows, before any file is removed and before the journal lets go
            results = self.catalog.run(commit, background=True, durable=False)
            self.catalog.sync()
            committed = {result.object.id for result in results if result is not None}
            superseded.release(self.catalog, self.tree, freed)
            return results
        finally:
            ahead.remove_unused(self.tree, [*plans.values(), *renamed], committed)
            for write in writes:
                self.tree.discard(write.staged)

    def _plan_staged(self, tx: Transaction, writes: list[StagedWrite]) -> tuple[dict[int, ahead.PlannedObject],
                                                                              list[ahead.PlannedObject]]:
        """The object each write would become (by index; none for a node without a name),
        and those of them whose files to make ahead: all but the ones a live object of their
        bucket deduplicates, as read before the lock (the commit decides)."""
        plans: dict[int, ahead.PlannedObject] = {}
        made_ahead: list[ahead.PlannedObject] = []
        for index, write in enumerate(writes):
            place = _node_place(tx, write.node)
            if place is None:
                continue
            plans[index] = ahead.PlannedObject(write.staged, place[0], new_object_id(), place[1])
            if self._live_copy(tx, place[0], write.staged.hash, None) is None:
                made_ahead.append(plans[index])
        return plans, made_ahead

    def follow_rename(self, tx: Transaction, node: int, old_name: str, new_name: str) -> Callable[[], None] | None:
        """After file `node` was renamed from `old_name` to `new_name` (in `tx`): an object that
        took its file name from that name (its `filename` is `old_name`, and no other node refers
        to it) follows it — file name, and content type where it was detected — so a file written
        under a temporary name and renamed after its commit (an atomic save, rsync) is not known
        by the temporary one. Returns what renames its alias, to run after the commit (a crash
        in between leaves an alias fsck repairs); None when nothing follows."""
        row = tx.one("select o.id, o.bucket, o.hash, o.filename, o.content_type from nodes n "
                     "join objects o on o.id = n.object_id where n.id = :node and o.deleted_at is null", {"node": node})
        if row is None or row["filename"] != old_name or old_name == new_name:
            return None
        if tx.one("select 1 as found from nodes where object_id = :id and id <> :node limit 1",
                  {"id": row["id"], "node": node}) is not None:
            return None
        with open(self.tree.blob_path(row["hash"]), "rb") as blob:
            head = blob.read(HEAD_SIZE)
        content_type = row["content_type"]
        if content_type == detect_content_type(head, old_name):  # detected, not given
            content_type = detect_content_type(head, new_name)
        tx.execute("update objects set filename = :filename, content_type = :content_type where id = :id",
                   {"filename": new_name, "content_type": content_type, "id": row["id"]})

        def move_alias() -> None:
            if self.tree.make_alias(row["hash"], row["bucket"], row["id"], new_name, blob_missing_ok=True) is None:
                # no blob: the object was freed since (cas/superseded.py), its folder empty again;
                # or damage, and the old alias, which fsck can restore it from, stays
                with suppress(OSError):
                    self.tree.alias_dir(row["bucket"], row["id"]).rmdir()
                return
            self.tree.alias_path(row["bucket"], row["id"], old_name).unlink(missing_ok=True)
            self.tree.remove_old_alias(row["bucket"], row["id"])  # layout 1 (cas/layout.py)

        return move_alias

    # reading -------------------------------------------------------------------------------

    def get(self, object_id: str) -> ObjectInfo:
        """A live object's metadata, with its names; NotFound for unknown or trashed ids."""
        return self._info(object_id, deleted=False)

    def get_trashed(self, object_id: str) -> ObjectInfo:
        return self._info(object_id, deleted=True)

    def _info(self, object_id: str, deleted: bool) -> ObjectInfo:
        object_id = parse_object_id(object_id)

        def read(tx: Transaction) -> ObjectInfo:
            row = tx.one("select * from objects where id = :id", {"id": object_id})
            if row is not None and (row["deleted_at"] is not None) != deleted:
                raise NotFound(f"object {object_id} is not in the trash: it is live" if deleted else
                               f"object {object_id} is in the trash; 'assetfs restore {object_id}' brings it back")
            if row is None:
                raise NotFound(f"no object {object_id} {'in the trash' if deleted else 'in the store'}")
            return ObjectInfo.from_row(row, names.names_of(tx, [object_id])[object_id])

        return self.catalog.run(read, write=False)

    def keep_handed_out(self, infos: list[ObjectInfo]) -> set[str]:
        """Before a view hands these objects' ids to a user (the mount: `user.assetfs.id`, a
        `.by-id` listing), touch those a writer's commit could still free at once, so that none
        is: the id may be copied into an application (cas/superseded.py). Returns the ids of
        those freed before the touch got to them, which are not to be handed out. A read-only
        store touches nothing (its writers see its mounts: cas/readers.py)."""
        candidates = [info.id for info in infos if superseded.may_be_freed(self.config, info, time.time())]
        if self.read_only or not candidates:
            return set()

        def touch(tx: Transaction) -> set[str]:
            now = time.time()
            for object_id in candidates:
                _touch(tx, object_id, now)
            placeholders, params = in_list(candidates)
            found = tx.all(f"select id from objects where id in ({placeholders})", params)
            return set(candidates) - {str(row["id"]) for row in found}

        return self.catalog.run(touch)

    def open_object(self, object_id: str) -> BinaryIO:
        """A read-only file of a live object's content (the classmethod `open` opens a store)."""
        info = self.get(object_id)
        try:
            return open(self.tree.blob_path(info.hash), "rb")
        except FileNotFoundError:
            raise StoreError(f"the content of {info.id} is missing from the store; run 'assetfs fsck'") from None

    def list(self, bucket: str | None = None, deleted: bool = False, page: int = 1000) -> Iterator[ObjectInfo]:
        """Live (or trashed) objects in id order, with their names; streams in pages."""
        if bucket is not None:
            check_bucket(bucket)
        condition = "deleted_at is not null" if deleted else "deleted_at is null"
        if bucket is not None:
            condition += " and bucket = :bucket"
        sql = f"select * from objects where {condition} and id > :after order by id limit :limit"
        for rows in self.catalog.pages(sql, {"bucket": bucket}, key="id", start=ZERO_ID, size=page):
            found = self.catalog.run(lambda tx: names.names_of(tx, [row["id"] for row in rows]), write=False)
            for row in rows:
                yield ObjectInfo.from_row(row, found.get(row["id"], []))

    def page(self, bucket: str, deleted: bool, after: str, limit: int) -> list[ObjectInfo]:
        """One short page of `list` for the mount: the bucket's live (or trashed) objects with
        ids after `after`, in id order, without their names."""
        check_bucket(bucket)
        condition = "deleted_at is not null" if deleted else "deleted_at is null"
        rows = self.catalog.run(
            lambda tx: tx.all(f"select * from objects where bucket = :bucket and {condition} and id > :after "
                              "order by id limit :limit", {"bucket": bucket, "after": after, "limit": limit}),
            write=False,
        )
        return [ObjectInfo.from_row(row) for row in rows]

    def buckets(self) -> list[str]:
        """Every bucket that has a row (it was used) or is configured."""
        stored = self.catalog.run(lambda tx: [row["name"] for row in tx.all("select name from buckets")], write=False)
        return sorted(set(stored) | set(self.config.buckets))

    def find(self, bucket: str, name: str) -> ObjectInfo:
        """The live object `<bucket>/<name>` refers to (by the named tree); NotFound otherwise.
        Bucket and name are checked before the catalog is asked."""
        check_bucket(bucket)
        parts = split_name(name)

        def read(tx: Transaction) -> ObjectInfo:
            node = names._resolve(tx, bucket, parts)
            row = None if node is None or node.get("object_id") is None else tx.one(
                "select * from objects where id = :id and deleted_at is null", {"id": node["object_id"]})
            if row is None:
                raise NotFound(f"no object named {bucket}/{'/'.join(parts)}")
            return ObjectInfo.from_row(row, names.names_of(tx, [row["id"]])[row["id"]])

        return self.catalog.run(read, write=False)

    # lifecycle -----------------------------------------------------------------------------

    def delete(self, object_id: str) -> ObjectInfo:
        """Move a live object to the trash; restorable until `purge_after` (now + bucket grace)."""
        object_id = parse_object_id(object_id)

        def move(tx: Transaction) -> ObjectInfo:
            row = _lock_live(tx, object_id)
            if row is None:
                if tx.one("select 1 as found from objects where id = :id", {"id": object_id}) is not None:
                    raise NotFound(f"object {object_id} is in the trash already; "
                                   f"'assetfs restore {object_id}' brings it back")
                raise NotFound(f"no object {object_id} in the store")
            trash_object(tx, object_id, time.time(), self.config.bucket(row["bucket"]).grace)
            return ObjectInfo.from_row(tx.one("select * from objects where id = :id", {"id": object_id}))

        return self.catalog.run(move)

    def restore(self, object_id: str) -> ObjectInfo:
        """Bring an object back from the trash, with the names it had that are still free."""
        object_id = parse_object_id(object_id)

        def bring_back(tx: Transaction) -> ObjectInfo:
            row = tx.one("select * from objects where id = :id and deleted_at is not null", {"id": object_id})
            if row is None:
                if tx.one("select 1 as found from objects where id = :id", {"id": object_id}) is not None:
                    raise NotFound(f"object {object_id} is not in the trash: it is live")
                raise NotFound(f"no object {object_id} in the trash")
            now = time.time()
            restored = names.rebind_object(tx, row["bucket"], object_id, row["trashed_names"], now)
            tx.execute(
                "update objects set deleted_at = null, purge_after = null, trashed_names = null, touched_at = :now "
                "where id = :id",
                {"now": now, "id": object_id},
            )
            return ObjectInfo.from_row(tx.one("select * from objects where id = :id", {"id": object_id}), restored)

        return self.catalog.run(bring_back)

    def hold(self, object_id: str, owner: str) -> None:
        """Keep a live object alive until `owner` releases it."""
        object_id, owner = parse_object_id(object_id), _check_owner(owner)

        def add(tx: Transaction) -> None:
            if _lock_live(tx, object_id) is None:
                raise NotFound(f"no object {object_id} in the store")
            tx.execute(
                "insert into holds (object_id, owner, created_at) values (:id, :owner, :now) on conflict do nothing",
                {"id": object_id, "owner": owner, "now": time.time()},
            )

        self.catalog.run(add)

    def release(self, object_id: str, owner: str) -> None:
        """Drop `owner`'s hold; the object is touched, so GC checks whether anything else uses it."""
        object_id, owner = parse_object_id(object_id), _check_owner(owner)

        def remove(tx: Transaction) -> None:
            if tx.one("select 1 as found from holds where object_id = :id and owner = :owner",
                      {"id": object_id, "owner": owner}) is None:
                raise NotFound(f"object {object_id} has no hold by {owner!r}")
            tx.execute("delete from holds where object_id = :id and owner = :owner", {"id": object_id, "owner": owner})
            _touch(tx, object_id, time.time())

        self.catalog.run(remove)

    def restore_names(self, trashed: list[ObjectInfo]) -> dict[str, list[str]]:
        """For objects in the trash: the names a restore would give back now (those of the
        names they had that are still free), by id."""

        def read(tx: Transaction) -> dict[str, list[str]]:
            found = {}
            for info in trashed:
                recorded = tx.value("select trashed_names from objects where id = :id", {"id": info.id})
                found[info.id] = [record["path"] for record in names.restorable_names(tx, info.bucket, recorded)]
            return found

        return self.catalog.run(read, write=False) if trashed else {}

    def list_holds(self, object_id: str | None = None, owner: str | None = None,
                   page: int = 1000) -> Iterator[Row]:
        """Holds (`object_id`, `owner`, `created_at`, the object's `bucket`), of one object
        or one owner or all, in (object id, owner) order; streams in pages."""
        where, params = [], {}
        if object_id is not None:
            where.append("h.object_id = :id")
            params["id"] = parse_object_id(object_id)
        if owner is not None:
            where.append("h.owner = :owner")
            params["owner"] = _check_owner(owner)
        after: tuple[str, str] = (ZERO_ID, "")
        while True:
            sql = ("select h.object_id, h.owner, h.created_at, o.bucket "
                   "from holds h join objects o on o.id = h.object_id "
                   "where (h.object_id > :after_id or (h.object_id = :after_id and h.owner > :after_owner)) "
                   + "".join(f"and {condition} " for condition in where)
                   + "order by h.object_id, h.owner limit :limit")
            bound = {**params, "after_id": after[0], "after_owner": after[1], "limit": page}
            rows = self.catalog.run(lambda tx: tx.all(sql, bound), write=False)
            yield from rows
            if len(rows) < page:
                return
            after = (str(rows[-1]["object_id"]), rows[-1]["owner"])

    def holds(self, object_id: str) -> list[str]:
        object_id = parse_object_id(object_id)
        rows = self.catalog.run(
            lambda tx: tx.all("select owner from holds where object_id = :id order by owner", {"id": object_id}),
            write=False,
        )
        return [row["owner"] for row in rows]


def _lock_live(tx: Transaction, object_id: str) -> Row | None:
    """Lock a live object's row and return its bucket; None when it is not live.

    An update, not a select: on PostgreSQL it waits for (and then sees) a garbage collector
    that has the row locked to trash or purge it, so a hold is never added to, and a delete
    never reports, an object the collector has just taken.
    """
    return tx.one("update objects set touched_at = touched_at where id = :id and deleted_at is null returning bucket",
                  {"id": object_id})


def trash_object(tx: Transaction, object_id: str, now: float, grace: float) -> None:
    """Move a live object to the trash until `now + grace`, keeping its names for restore (for
    an object without names, the ones it had when it lost its last: `names._let_go`)."""
    tx.execute(
        "update objects set deleted_at = :now, purge_after = :purge_after, "
        "trashed_names = case when :names = '[]' then trashed_names else :names end "
        "where id = :id and deleted_at is null",
        {"now": now, "purge_after": now + grace, "names": names.unbind_object(tx, object_id), "id": object_id},
    )


def _touch(tx: Transaction, object_id: str, now: float) -> None:
    tx.execute("update objects set touched_at = :now where id = :id and deleted_at is null", {"now": now, "id": object_id})


def _check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner or len(owner) > MAX_OWNER_LENGTH or "\0" in owner:
        raise BadInput(f"invalid hold owner {owner!r}: use 1-{MAX_OWNER_LENGTH} characters")
    return owner


@contextmanager
def _opened(source: str | Path | BinaryIO) -> Iterator[tuple[BinaryIO, str | None]]:
    """A binary stream for a path or stream, and the file name it came from (if any)."""
    if not isinstance(source, (str, Path)):
        yield source, None
        return
    path = Path(source)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise BadInput(f"{path} is a folder, not a file")
        stream = open(path, "rb")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except OSError as error:
        raise BadInput(f"{path}: cannot read: {error.strerror}") from None
    with stream:
        yield stream, path.name


__all__ = ["Store", "ObjectInfo", "PutResult"]
