"""The `assetfs` command.

Exit codes: 0 ok; 1 problems found or not found; 2 bad usage or bad input; 75 the write lock
stayed taken; 78 the catalog's schema is not this assetfs's (docs/upgrade.md); 130
interrupted (SIGINT), 143 terminated (SIGTERM). Every error is one line on stderr; set ASSETFS_DEBUG=1 to
see the traceback of an unexpected one.
"""

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

import click

from cas import names, progress
from cas.durations import parse_duration
from cas.catalog import is_database_error
from cas.catalog.base import first_line
from cas.errors import AssetfsError, BadInput, CatalogError, NotFound
from cas.faults import crash_point
from cas.ids import parse_object_id
from cas.locate import StoreChoice, check_store, choose_store
from cas.lookup import named_objects, object_at, parse_named_path
from cas.model import ObjectInfo, PutResult, iso_time
from cas.store import PutRequest, Store
from cas.validate import check_bucket, split_name


class Context:
    """The store a command works on, chosen as cas/locate.py says."""

    def __init__(self, store_option: str | None) -> None:
        self.store_option = store_option

    @cached_property
    def choice(self) -> StoreChoice:
        return choose_store(self.store_option)

    @property
    def store_path(self) -> Path:
        return self.choice.path

    def existing_store(self) -> Path:
        """The chosen store's path, or one line saying which path was tried and why."""
        return check_store(self.choice)

    def open(self, read_only: bool = False) -> Store:
        """The store; `read_only` for the read commands, which write nothing (docs/upgrade.md)."""
        return Store.open(self.existing_store(), read_only=read_only)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--store", "store_option", metavar="PATH",
              help="The store's folder (default: $ASSETFS_STORE, else 'store' in /etc/assetfs.toml, "
                   "else /var/lib/assetfs).")
@click.version_option(package_name="assetfs", prog_name="assetfs", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, store_option: str | None) -> None:
    """assetfs: a content-addressed asset store with a FUSE view."""
    ctx.obj = Context(store_option)


@cli.command()
@click.option("--database-url", help="Keep the catalog in PostgreSQL instead of SQLite in the store "
              "(its password may come from PGPASSWORD or PGPASSFILE instead).")
@click.option("--database-schema", help="PostgreSQL: the schema of the catalog's tables (default: assetfs).")
@click.option("--group", help="Let this group read the store (default: its owner alone).")
@pass_context
def init(context: Context, database_url: str | None, database_schema: str | None, group: str | None) -> None:
    """Create a store and its catalog's schema (does nothing if they are there already)."""
    from serve import signing

    store, created = Store.init(context.store_path, database_url=database_url, group=group,
                                database_schema=database_schema)
    with store:
        signing.load_secret(store.root)  # made here: `assetfs url`, a read command, only reads it
        what = "created" if created else "already a store:"
        click.echo(f"{what} {store.root} (catalog: {store.catalog.describe()})")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print the SQL it would run; change nothing.")
@pass_context
def migrate(context: Context, dry_run: bool) -> None:
    """Upgrade the catalog's schema to this assetfs's version, then the blob tree's layout
    (docs/upgrade.md; safe while the store is in use, and to run again after an interruption)."""
    from cas import storeid
    from cas.catalog.migrate import migrate as migrate_catalog
    from cas.catalog.schema import SCHEMA_VERSION
    from cas.layout import migrate_aliases

    with Store.open(context.existing_store(), read_only=dry_run, check_schema=False) as store:  # --dry-run reads
        current, statements = migrate_catalog(store.catalog, dry_run=dry_run)
        where = store.catalog.describe()
        layout = None
        if not dry_run:  # a store from before migration 11 gets its id (cas/storeid.py)
            storeid.check(store.root, store.catalog)
            layout = migrate_aliases(store)
        elif not statements:  # the layout's version is in the catalog from migration 12 on
            layout = migrate_aliases(store, dry_run=True)
    if not statements:
        click.echo(f"the catalog ({where}) is up to date: schema version {current}")
    elif dry_run:
        click.echo(f"-- the catalog ({where}) is at schema version {current}; migrating it to {SCHEMA_VERSION} runs,"
                   " in one transaction:")
        click.echo("begin;")
        for statement in statements:
            click.echo(statement.strip() + ";")
        click.echo("commit;")
    else:
        click.echo(f"migrated the catalog ({where}) from schema version {current} to {SCHEMA_VERSION}")
    if layout is not None:
        click.echo(layout.describe(dry_run))


# put -----------------------------------------------------------------------------------------


def _parse_metadata(pairs: Iterable[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise BadInput(f"--meta takes KEY=VALUE, got {pair!r}")
        metadata[key] = value
    return metadata


def _expand(sources: list[str], recursive: bool) -> list[tuple[str, str | None]]:
    """Each file to store and the name it gets by default: its file name, or with -r, for
    the files under a folder, the folder's name and the path below it (as `cp -r` would).
    Standard input has no name."""
    expanded: list[tuple[str, str | None]] = []
    for source in sources:
        if source == "-":
            expanded.append((source, None))
        elif recursive and Path(source).is_dir():
            expanded.extend(_walk(Path(source)))
        else:
            expanded.append((source, Path(source).name))
    return expanded


def _walk(folder: Path) -> list[tuple[str, str]]:
    """Every regular file under `folder`, in name order, with its name `<folder name>/<path>`."""
    top = folder.resolve().name
    found: list[tuple[str, str]] = []

    def refuse(error: OSError) -> None:
        raise BadInput(f"{error.filename}: cannot read the folder: {error.strerror}")

    for current, folders, files in os.walk(folder, onerror=refuse):
        folders.sort()
        for entry in folders:
            if os.path.islink(os.path.join(current, entry)):
                raise BadInput(f"{os.path.join(current, entry)} is a link to a folder; put -r does not follow them")
        for entry in sorted(files):
            path = os.path.join(current, entry)
            if os.path.exists(path) and not os.path.isfile(path):
                raise BadInput(f"{path} is not a regular file")
            relative = PurePosixPath(Path(path).relative_to(folder).as_posix())
            found.append((path, str(PurePosixPath(top) / relative) if top else str(relative)))
    return found


def _names_for(sources: list[tuple[str, str | None]], name: str | None, no_name: bool,
               recursive: bool) -> list[str | None]:
    """The name each file gets in the bucket's tree: by default the one `_expand` gave it.

    `--name NAME` names a single file; `--name FOLDER/` puts every file (with -r, every
    tree) into that folder. Standard input gets a name only from `--name`.
    """
    if no_name and name is not None:
        raise BadInput("--name and --no-name exclude each other")
    if name == "":
        raise BadInput("--name must not be empty")
    if name and not name.endswith("/") and (len(sources) > 1 or recursive):
        raise BadInput("--name with several files or -r must be a folder ending in '/'")
    folder = name if name and name.endswith("/") else ""
    if folder and any(file == "-" for file, _ in sources):
        raise BadInput("standard input has no file name: give it a full --name, not a folder")

    def name_of(default: str | None) -> str | None:
        if no_name:
            return None
        if name and not folder:
            return name
        return None if default is None else folder + default

    return [name_of(default) for _, default in sources]


def _check_sources(files: list[str]) -> int:
    """Check every source before anything is stored; returns their total size."""
    if files.count("-") > 1:
        raise BadInput("standard input ('-') can be given only once")
    total = 0
    for file in files:
        if file == "-":
            continue
        path = Path(file)
        if not path.exists():
            raise BadInput(f"{file}: no such file")
        if path.is_dir():
            raise BadInput(f"{file} is a folder, not a file (put -r stores a folder's files)")
        if not os.access(path, os.R_OK):
            raise BadInput(f"{file}: permission denied")
        total += path.stat().st_size
    return total


def _check_names(store: Store, bucket: str, files: list[str], names_list: list[str | None]) -> None:
    """Check every name before anything is stored, so one bad name stores nothing."""
    check_bucket(bucket)
    seen: dict[tuple[str, ...], str] = {}
    for file, file_name in zip(files, names_list):
        if file_name is None:
            continue
        parts = split_name(file_name)
        if tuple(parts) in seen:
            raise BadInput(f"{seen[tuple(parts)]} and {file} would both be named {bucket}/{'/'.join(parts)}")
        seen[tuple(parts)] = file
        store.catalog.run(lambda tx: names.check_target(tx, bucket, parts), write=False)


def _put_line(result: PutResult) -> str:
    info = result.object
    where = result.name if result.name else f"{info.id}/{info.filename}"
    return f"{info.id}  {info.bucket}/{where}"


def put_record(result: PutResult) -> dict[str, Any]:
    info = result.object
    return {"id": info.id, "bucket": info.bucket, "hash": info.hash, "size": info.size,
            "content_type": info.content_type, "name": result.name, "deduplicated": result.deduplicated}


@cli.command()
@click.argument("bucket")
@click.argument("files", nargs=-1, required=True)
@click.option("--name", help="Name in the bucket's tree (a folder ending in '/' for several files).")
@click.option("--no-name", is_flag=True, help="Store without a name (kept alive by holds or rules only).")
@click.option("--content-type", help="Content type to record instead of detecting it.")
@click.option("--expires-in", "expires_in", help="Delete the object after this long (e.g. 30d).")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata to record (repeatable).")
@click.option("-r", "--recursive", is_flag=True,
              help="Store the files under folders, named by the folder's name and their path in it.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_context
def put(context: Context, bucket: str, files: tuple[str, ...], name: str | None, no_name: bool,
        content_type: str | None, expires_in: str | None, meta: tuple[str, ...], recursive: bool,
        as_json: bool) -> None:
    """Store FILES (or '-' for standard input) in BUCKET."""
    check_bucket(bucket)
    sources = _expand(list(files), recursive)
    if not sources:
        raise BadInput("no files to store: the folders are empty")
    files_list = [file for file, _ in sources]
    names_list = _names_for(sources, name, no_name, recursive)
    metadata = _parse_metadata(meta)
    expires_at = time.time() + parse_duration(expires_in, "--expires-in") if expires_in is not None else None
    total = _check_sources(files_list)
    with context.open() as store:
        released: set[str] = set()  # objects whose last name a put took over
        store.catalog.on_released = released.update
        _check_names(store, bucket, files_list, names_list)
        bar = progress.ByteBar(total, shown=progress.wanted(total, len(files_list)))

        def requests() -> Iterator[PutRequest]:
            """One request per file, opened only while the store reads it."""
            for file, file_name in zip(files_list, names_list):
                if file == "-":
                    filename = PurePosixPath(file_name).name if file_name else "stdin"
                    yield PutRequest(progress.CountingReader(sys.stdin.buffer, bar), file_name, filename)
                    continue
                with open(file, "rb") as stream:
                    reader = progress.CountingReader(stream, bar)
                    yield PutRequest(reader, file_name, Path(file).name)
                    reader.finish(os.fstat(stream.fileno()).st_size)  # content found stored is not read

        def show(result: PutResult) -> None:
            bar.clear()
            click.echo(json.dumps(put_record(result)) if as_json else _put_line(result))

        try:
            store.put_many(bucket, requests(), content_type=content_type, metadata=metadata,
                           expires_at=expires_at, on_result=show)
        finally:
            bar.clear()
            if released:  # to the trash now, unless something else refers to them
                from casgc.recheck import recheck

                recheck(store, released)


# reading -------------------------------------------------------------------------------------


def object_record(info: ObjectInfo, holds: list[str] | None = None) -> dict[str, Any]:
    record = info.to_json()
    record["name"] = info.names[0] if info.names else None
    if holds is not None:
        record["holds"] = holds
    return record


@cli.command()
@click.argument("object_id")
@pass_context
def cat(context: Context, object_id: str) -> None:
    """Write an object's content to standard output."""
    with context.open(read_only=True) as store, store.open_object(object_id) as source:
        shutil.copyfileobj(source, sys.stdout.buffer, 1024 * 1024)


@cli.command()
@click.argument("object_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="Where to write (default: its filename; '-' for standard output).")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@pass_context
def get(context: Context, object_id: str, output: str | None, force: bool) -> None:
    """Copy an object's content to a file (or with -o -, to standard output)."""
    with context.open(read_only=True) as store:
        info = store.get(object_id)
        if output == "-":
            with store.open_object(info.id) as source:
                shutil.copyfileobj(source, sys.stdout.buffer, 1024 * 1024)
            return
        target = Path(output or info.filename)
        if target.exists() and not force:
            raise BadInput(f"{target} exists; use --force to replace it")
        partial = target.with_name(f".{target.name}.assetfs-partial")
        try:
            with store.open_object(info.id) as source, open(partial, "wb") as sink:
                crash_point("get:copying")
                shutil.copyfileobj(source, sink, 1024 * 1024)
            partial.replace(target)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise BadInput(f"cannot write {target}: {error.strerror}") from None
        except BaseException:  # SIGTERM (Terminated), Ctrl-C: no partial file stays behind
            partial.unlink(missing_ok=True)
            raise
        click.echo(f"{info.id}  {target}")


def _object_id_of(store: Store, reference: str) -> str:
    """An object id given as itself or as the name BUCKET/PATH of the object."""
    if "/" not in reference:
        return parse_object_id(reference)
    try:
        path = parse_named_path(reference, "name")
    except BadInput:
        raise BadInput(f"neither an object id nor a BUCKET/PATH name: {reference!r}") from None
    return object_at(store, path)


@cli.command()
@click.argument("reference", metavar="ID|BUCKET/PATH")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def stat(context: Context, reference: str, as_json: bool) -> None:
    """Show an object's metadata, names and holds (by id, or by a name it has)."""
    with context.open(read_only=True) as store:
        info = store.get(_object_id_of(store, reference))
        record = object_record(info, store.holds(info.id))
        if "/" in reference:  # by name: the name it was found by
            record["name"] = reference.partition("/")[2].strip("/")
    if as_json:
        click.echo(json.dumps(record))
        return
    for key, value in record.items():
        if isinstance(value, (list, dict)):
            value = json.dumps(value)
        click.echo(f"{key + ':':14} {'' if value is None else value}")


def _ls_line(info: ObjectInfo, name: str | None = None) -> str:
    where = name or (info.names[0] if info.names else f"{info.id}/{info.filename}")
    return f"{info.id}  {info.size:>12}  {iso_time(info.created_at)}  {info.bucket}/{where}"


@cli.command("ls")
@click.argument("where", metavar="[BUCKET | BUCKET/FOLDER/ | BUCKET/PATH]", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def ls(context: Context, where: str | None, as_json: bool) -> None:
    """List live objects: of BUCKET (or all), oldest first; or by name, under a folder of
    a bucket's tree (one line per name, in name order)."""
    with context.open(read_only=True) as store:
        if where is None or "/" not in where:
            for info in store.list(where):
                click.echo(json.dumps(object_record(info)) if as_json else _ls_line(info))
            return
        for name, info in named_objects(store, parse_named_path(where, "name")):
            if as_json:
                click.echo(json.dumps({**object_record(info), "name": name}))
            else:
                click.echo(_ls_line(info, name))


# lifecycle -----------------------------------------------------------------------------------


def _each_id(store: Store, object_ids: tuple[str, ...], action, verb: str) -> None:
    """Apply `action` to every id (all checked first); a missing one is reported, the rest go on."""
    parsed = [parse_object_id(object_id) for object_id in object_ids]
    missing = 0
    for object_id in parsed:
        try:
            action(object_id)
        except NotFound as error:
            click.echo(f"assetfs: {error}", err=True)
            missing += 1
            continue
        click.echo(f"{verb} {object_id}")
    if missing:
        raise SystemExit(NotFound.exit_code)


@cli.command()
@click.argument("object_ids", nargs=-1, required=True)
@pass_context
def rm(context: Context, object_ids: tuple[str, ...]) -> None:
    """Move objects to the trash (restorable until the bucket's grace ends)."""
    with context.open() as store:
        _each_id(store, object_ids, store.delete, "trashed")


@cli.command()
@click.argument("object_ids", nargs=-1, required=True)
@pass_context
def restore(context: Context, object_ids: tuple[str, ...]) -> None:
    """Bring objects back from the trash, with their names."""
    with context.open() as store:
        _each_id(store, object_ids, store.restore, "restored")


@cli.group()
def hold() -> None:
    """Holds: explicit references that keep an object alive."""


@hold.command("add")
@click.argument("object_id")
@click.argument("owner")
@pass_context
def hold_add(context: Context, object_id: str, owner: str) -> None:
    """Keep OBJECT_ID alive until OWNER releases it."""
    with context.open() as store:
        store.hold(object_id, owner)
        click.echo(f"held {parse_object_id(object_id)} for {owner}")


@hold.command("rm")
@click.argument("object_id")
@click.argument("owner")
@pass_context
def hold_rm(context: Context, object_id: str, owner: str) -> None:
    """Release OWNER's hold on OBJECT_ID."""
    with context.open() as store:
        store.release(object_id, owner)
        click.echo(f"released {parse_object_id(object_id)} for {owner}")


@hold.command("ls")
@click.argument("object_id", required=False)
@click.option("--owner", help="Only this owner's holds.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def hold_ls(context: Context, object_id: str | None, owner: str | None, as_json: bool) -> None:
    """List holds: of OBJECT_ID, of an owner, or all."""
    with context.open(read_only=True) as store:
        for row in store.list_holds(object_id, owner):
            record = {"object_id": str(row["object_id"]), "owner": row["owner"], "bucket": row["bucket"],
                      "created_at": iso_time(row["created_at"])}
            if as_json:
                click.echo(json.dumps(record))
            else:
                click.echo(f"{record['object_id']}  {record['created_at']}  {record['bucket']}  {record['owner']}")


# checking ------------------------------------------------------------------------------------


@cli.command()
@click.option("--verify-content", is_flag=True, help="Re-hash every blob (reads all data).")
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing data.")
@click.option("--orphan-grace", help="Leave files without a catalog row alone while younger than this "
              "(default: the store's orphan_grace).")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def fsck(context: Context, verify_content: bool, repair: bool, orphan_grace: str | None, as_json: bool) -> None:
    """Reconcile the files on disk with the catalog."""
    from cas.fsck import check_store

    with context.open(read_only=not repair) as store:  # a check writes nothing (docs/upgrade.md)
        grace = parse_duration(orphan_grace, "--orphan-grace") if orphan_grace is not None else store.config.orphan_grace
        report = check_store(store, verify_content=verify_content, repair=repair, orphan_grace=grace)
    for problem in report.problems:
        click.echo(json.dumps(problem.to_json()) if as_json else problem.describe())
    if as_json:
        click.echo(json.dumps(report.summary()))
    else:
        click.echo(report.summary_line())
    raise SystemExit(0 if report.clean else 1)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_context
def stats(context: Context, as_json: bool) -> None:
    """Objects, blobs and bytes per bucket, and the dedup ratio."""
    from cas.stats import collect_stats

    with context.open(read_only=True) as store:
        result = collect_stats(store)
    click.echo(json.dumps(result) if as_json else result_table(result))


def result_table(result: dict[str, Any]) -> str:
    rows = [("bucket", "objects", "blobs", "logical", "physical", "trashed")]
    for bucket, numbers in result["buckets"].items():
        rows.append((bucket, numbers["objects"], numbers["blobs"], progress.human_bytes(numbers["logical_bytes"]),
                     progress.human_bytes(numbers["physical_bytes"]), numbers["trashed_objects"]))
    total = result["total"]
    rows.append(("(all)", total["objects"], total["blobs"], progress.human_bytes(total["logical_bytes"]),
                 progress.human_bytes(total["physical_bytes"]), total["trashed_objects"]))
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(str(cell).rjust(width) if index else str(cell).ljust(width)
                       for index, (cell, width) in enumerate(zip(row, widths))) for row in rows]
    lines.append(f"dedup ratio: {total['dedup_ratio']:.2f} (logical / physical bytes)")
    return "\n".join(lines)


# entry point ---------------------------------------------------------------------------------


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT: what the command
    was doing unwinds and cleans up (a put removes its staging file) before the exit. A second
    SIGTERM meanwhile ends the process at once."""

    def __str__(self) -> str:
        return "terminated"


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)  # commands that wait for SIGTERM (gc --watch, mount) set their own
    try:
        cli.main(standalone_mode=False)
    except Terminated:
        click.echo("assetfs: terminated", err=True)
        raise SystemExit(128 + signal.SIGTERM)
    except click.exceptions.Abort:
        click.echo("assetfs: interrupted", err=True)
        raise SystemExit(130)
    except click.ClickException as error:
        command = error.ctx.command_path if isinstance(error, click.UsageError) and error.ctx else "assetfs"
        click.echo(f"assetfs: {error.format_message()} (see '{command} --help')", err=True)
        raise SystemExit(error.exit_code)
    except AssetfsError as error:
        click.echo(f"assetfs: {error}", err=True)
        raise SystemExit(error.exit_code)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1)
    except KeyboardInterrupt:
        click.echo("assetfs: interrupted", err=True)
        raise SystemExit(130)
    except Exception as error:  # the last line of defence: one line, not a traceback
        if os.environ.get("ASSETFS_DEBUG") == "1":
            raise
        if is_database_error(error):
            click.echo(f"assetfs: catalog database error: {first_line(error)}", err=True)
            raise SystemExit(CatalogError.exit_code)
        click.echo(f"assetfs: unexpected error: {type(error).__name__}: {error} (ASSETFS_DEBUG=1 shows the traceback)",
                   err=True)
        raise SystemExit(1)



# the FUSE view (fusefs/) ---------------------------------------------------------------------


def _folder(path: str, what: str) -> Path:
    """A folder given on the command line; an empty one (`"$UNSET"`) is refused rather than
    taken for the current folder."""
    if not path.strip():
        raise BadInput(f"the {what} is empty: give a folder")
    return Path(path)


@cli.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--foreground", "-f", is_flag=True, help="Stay in the foreground (Ctrl-C unmounts).")
@click.option("--read-only", is_flag=True, help="Mount read-only.")
@click.option("--allow-other", is_flag=True, help="Let other users use the mount (the kernel checks modes).")
@click.option("--gc", "run_gc", is_flag=True, help="Run the garbage collector in the mount's daemon.")
@click.option("--log-file", type=click.Path(dir_okay=False),
              help="The daemon's log (default: <store>/mount.log; with --foreground, stderr). SIGHUP reopens it.")
@click.option("--pid-file", type=click.Path(dir_okay=False),
              help="Write the daemon's pid here once the mount is ready (for a logrotate postrotate); "
                   "an existing file is refused unless it is a stale pid file.")
@click.option("--clear-stale", is_flag=True,
              help="Unmount a stale assetfs mount left at MOUNTPOINT by a daemon that died (for a service's restart).")
@pass_context
def mount(context: Context, mountpoint: str, foreground: bool, read_only: bool, allow_other: bool, run_gc: bool,
          log_file: str | None, pid_file: str | None, clear_stale: bool) -> None:
    """Mount the store at MOUNTPOINT (in the background once ready, unless --foreground)."""
    from fusefs.mount import MountOptions
    from fusefs.mount import mount as mount_store

    options = MountOptions(read_only=read_only, allow_other=allow_other, gc=run_gc, clear_stale=clear_stale)
    where = _folder(mountpoint, "mountpoint")
    store_path = context.existing_store()
    Store.open(store_path, read_only=True).close()  # a catalog of another schema version: its own exit code
    pid = mount_store(store_path, where, options, foreground=foreground,
                      log_file=Path(log_file) if log_file else None, pid_file=Path(pid_file) if pid_file else None)
    if pid is not None:
        click.echo(f"mounted {store_path} at {mountpoint} (daemon pid {pid}); "
                   f"unmount with 'assetfs umount {mountpoint}'")


@cli.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
def umount(mountpoint: str) -> None:
    """Unmount an assetfs mount (also one whose daemon died)."""
    from fusefs.mount import umount as umount_store

    umount_store(_folder(mountpoint, "mountpoint"))


# backups and moves (docs/backup.md) ------------------------------------------------------


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the dump to this file (made "
              "0600) instead of standard output.")
@click.option("--pause-sweep", "pause_sweep", default="6h", show_default=True,
              help="The collector unlinks no blob for this long, or until --resume-sweep: copy the blob tree "
                   "meanwhile. 0: no pause (the dump only reads).")
@click.option("--resume-sweep", "resume_sweep", metavar="PAUSE_ID",
              help="The blob tree's copy is done: end the dump's pause (exit 1 if it had run out already).")
@pass_context
def dump(context: Context, output: str | None, pause_sweep: str, resume_sweep: str | None) -> None:
    """Write the catalog as JSON lines, from one snapshot, while the store keeps running."""
    from cas import dump as dumping, sweeppause

    pause_for = 0.0 if pause_sweep.strip() == "0" else parse_duration(pause_sweep, "--pause-sweep")
    # without a pause the dump only reads (a read-only role, a read-only filesystem: docs/upgrade.md)
    with context.open(read_only=resume_sweep is None and not pause_for) as store:
        if resume_sweep is not None:
            pause = sweeppause.end(store.catalog, resume_sweep)
            click.echo(f"sweep pause {pause.id} ended; the collector unlinks blobs again")
            return
        if output is None:
            header = dumping.dump(store, sys.stdout.write, pause_for)
            sys.stdout.flush()
        else:
            with dumping.write_file(Path(output), store.root) as file:
                header = dumping.dump(store, file.write, pause_for)
    pause = header["sweep_pause"]
    if pause is not None:
        click.echo(f"dump: the collector unlinks no blob until {pause['ends_at']}: copy the blob tree now, then "
                   f"run 'assetfs dump --resume-sweep {pause['id']}'", err=True)


@cli.command()
@click.argument("source", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@pass_context
def load(context: Context, source: str) -> None:
    """Fill the store's empty catalog from a dump (a file, or - for standard input)."""
    from cas import dump as dumping

    root = context.existing_store()
    dumping.create_private_catalog(root)
    with Store.open(root, check_schema=False) as store:
        store.create_schema()  # a new catalog (a move, a restore) has no tables yet
        if source == "-":
            header, counts = dumping.load(store, sys.stdin)
        else:
            try:
                with open(source, encoding="utf-8") as file:
                    header, counts = dumping.load(store, file)
            except OSError as error:
                raise BadInput(f"cannot read {source}: {error.strerror}") from None
        differences = dumping.settings_differences(header["settings"], store.config)
    loaded = ", ".join(f"{count} {table}" for table, count in counts.items())
    click.echo(f"loaded store {header['store_id']} (dumped {header['taken_at']} from {header['source']}): {loaded}")
    for line in differences:
        click.echo(f"load: {line} from the dumped store's assetfs.toml: copy its bucket settings here", err=True)


# the garbage collector (gc/, import name casgc) --------------------------------------------


@cli.command("gc")
@click.option("--dry-run", is_flag=True, help="Report what would be collected; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON (one line per run).")
@click.option("--watch", is_flag=True, help="Run periodically until SIGINT or SIGTERM.")
@click.option("--interval", help="Time between runs with --watch (default: the store's [gc] interval).")
@pass_context
def gc_command(context: Context, dry_run: bool, as_json: bool, watch: bool, interval: str | None) -> None:
    """Collect what nothing references: trash, purge, sweep blobs, remove orphans."""
    from casgc.console import collect

    seconds = parse_duration(interval, "--interval") if interval is not None else None
    with context.open(read_only=dry_run) as store:  # a dry run writes nothing (docs/upgrade.md)
        raise SystemExit(collect(store, dry_run, as_json, seconds, watch))


@cli.group()
def trash() -> None:
    """Deleted objects, restorable until their bucket's grace ends."""


@trash.command("ls")
@click.argument("bucket", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def trash_ls(context: Context, bucket: str | None, as_json: bool) -> None:
    """List trashed objects (of BUCKET, or all)."""
    from casgc.console import trash_list

    with context.open(read_only=True) as store:
        trash_list(store, bucket, as_json)


@trash.command("restore")
@click.argument("object_ids", nargs=-1, required=True)
@pass_context
def trash_restore(context: Context, object_ids: tuple[str, ...]) -> None:
    """Bring objects back from the trash, with their names."""
    with context.open() as store:
        _each_id(store, object_ids, store.restore, "restored")


@trash.command("purge")
@click.option("--older-than", help="Only objects deleted longer ago than this (e.g. 1d).")
@click.option("--all", "purge_all", is_flag=True, help="Every object in the trash, however recent.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def trash_purge(context: Context, older_than: str | None, purge_all: bool, as_json: bool) -> None:
    """Remove trashed objects for good before their grace ends, and free their blobs."""
    from casgc.console import trash_purge as purge

    if purge_all == (older_than is not None):
        raise BadInput("say what to purge: --older-than DURATION, or --all for the whole trash"
                       if not purge_all else "--all and --older-than exclude each other")
    seconds = 0.0 if purge_all else parse_duration(older_than, "--older-than")
    with context.open() as store:
        raise SystemExit(purge(store, seconds, as_json))

# the HTTP server (serve/) ----------------------------------------------------------------------


@cli.command()
@click.option("--listen", help="HOST:PORT to listen on (default: [serve] listen, 127.0.0.1:8080).")
@click.option("--workers", type=int, help="Worker processes (default: [serve] workers, 1).")
@pass_context
def serve(context: Context, listen: str | None, workers: int | None) -> None:
    """Serve the store over HTTP until SIGTERM or SIGINT (docs/http.md)."""
    from serve.server import run

    run(context.existing_store(), listen, workers)


@cli.group()
def token() -> None:
    """Bearer tokens for `assetfs serve`, scoped to buckets and to reading and/or writing."""


@token.command("create")
@click.option("--bucket", "buckets", multiple=True, required=True, help="A bucket it may use (repeatable).")
@click.option("--read", "can_read", is_flag=True, help="It may read (GET, HEAD, list, metadata, signed URLs).")
@click.option("--write", "can_write", is_flag=True, help="It may write (upload, delete, restore, holds).")
@click.option("--expires-in", "expires_in", help="It stops working after this long (e.g. 30d).")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def token_create(context: Context, buckets: tuple[str, ...], can_read: bool, can_write: bool,
                 expires_in: str | None, as_json: bool) -> None:
    """Make a token; it is printed once and stored only hashed."""
    from cas import tokens

    expires_at = time.time() + parse_duration(expires_in, "--expires-in") if expires_in is not None else None
    with context.open() as store:
        made, secret = tokens.create(store.catalog, list(buckets), can_read, can_write, expires_at)
    click.echo(json.dumps({**made.to_json(), "token": secret}) if as_json else secret)


@token.command("ls")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def token_ls(context: Context, as_json: bool) -> None:
    """List tokens (their ids and scopes; the secrets are not kept)."""
    from cas import tokens

    with context.open(read_only=True) as store:
        for made in tokens.list_tokens(store.catalog):
            record = made.to_json()
            verbs = "+".join(verb for verb in ("read", "write") if record[verb])
            click.echo(json.dumps(record) if as_json else
                       f"{made.id}  {verbs:10}  {','.join(made.buckets)}  expires {record['expires_at'] or 'never'}")


@token.command("revoke")
@click.argument("token_ids", nargs=-1, required=True)
@pass_context
def token_revoke(context: Context, token_ids: tuple[str, ...]) -> None:
    """Revoke tokens by id (as `token ls` shows them)."""
    from cas import tokens

    with context.open() as store:
        for token_id in token_ids:
            click.echo(f"revoked {tokens.revoke(store.catalog, token_id)}")


@cli.command()
@click.argument("object_id")
@click.option("--expires-in", "expires_in", default="1h", show_default=True, help="How long the link works.")
@click.option("--base-url", help="What the link starts with (default: [serve] base_url, or none).")
@pass_context
def url(context: Context, object_id: str, expires_in: str, base_url: str | None) -> None:
    """Print a signed link to a live object that works without a token until it expires."""
    from serve import signing

    lifetime = parse_duration(expires_in, "--expires-in")
    if lifetime <= 0:
        raise BadInput("--expires-in must be longer than 0s")
    with context.open(read_only=True) as store:  # writes nothing: a reader may sign (docs/upgrade.md)
        info = store.get(object_id)
        secret = signing.load_secret(store.root, create=False)
        base = (base_url or store.config.serve.base_url or "").rstrip("/")
    click.echo(base + signing.signed_path(secret, info.id, int(time.time() + lifetime)))


if __name__ == "__main__":
    main()
