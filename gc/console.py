"""What the `assetfs gc` and `assetfs trash` commands print, and how `--watch` stops.

The click commands themselves are in cas/cli.py (section "the garbage collector").
"""

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from casgc.report import RunReport
from casgc.runner import purge_trash, run_once, watch
from cas.errors import BadInput
from cas.model import ObjectInfo, iso_time
from cas.store import Store


class TerminalProgress:
    """One status line on stderr while a pass runs, when stderr is a terminal."""

    def __init__(self) -> None:
        self.shown = sys.stderr.isatty()

    def __call__(self, pass_name: str, examined: int) -> None:
        if self.shown:
            click.echo(f"\r\033[Kgc: {pass_name}: {examined} examined", nl=False, err=True)

    def clear(self) -> None:
        if self.shown:
            click.echo("\r\033[K", nl=False, err=True)


def show(report: RunReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        for line in report.lines():
            click.echo(line)


def collect(store: Store, dry_run: bool, as_json: bool, interval: float | None, watching: bool) -> int:
    """`assetfs gc`: every pass once (exit 1 when a row failed or a bucket was skipped), or
    with --watch until SIGINT/SIGTERM (exit 0)."""
    if watching and dry_run:
        raise BadInput("--dry-run and --watch exclude each other")
    if interval is not None and not watching:
        raise BadInput("--interval applies only with --watch")
    if watching:
        with _stopped_by_signals() as stop:
            watch(store, stop, interval, on_report=lambda report: show(report, as_json))
        click.echo("gc: stopped", err=True)
        return 0
    progress = TerminalProgress()
    report = run_once(store, dry_run=dry_run, progress=progress)
    progress.clear()
    show(report, as_json)
    return 0 if report.clean else 1


@contextmanager
def _stopped_by_signals() -> Iterator[threading.Event]:
    """An event that SIGINT and SIGTERM set (the current batch finishes, then the loop ends)."""
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def trash_list(store: Store, bucket: str | None, as_json: bool, page: int = 500) -> None:
    """Trashed objects, each with the name it gets back on restore (the first of its names
    still free; `names` lists them all); without one, restore leaves it in the id view."""
    batch: list[ObjectInfo] = []
    for info in store.list(bucket, deleted=True):
        batch.append(info)
        if len(batch) == page:
            _show_trashed(store, batch, as_json)
            batch = []
    _show_trashed(store, batch, as_json)


def _show_trashed(store: Store, batch: list[ObjectInfo], as_json: bool) -> None:
    restored = store.restore_names(batch)
    for info in batch:
        names = restored[info.id]
        if as_json:
            click.echo(json.dumps(info.to_json(names=names, name=names[0] if names else None)))
        else:
            where = names[0] if names else f"{info.id}/{info.filename}"
            click.echo(f"{info.id}  {info.size:>12}  deleted {iso_time(info.deleted_at)}  "
                       f"purge after {iso_time(info.purge_after)}  {info.bucket}/{where}")


def trash_purge(store: Store, older_than: float, as_json: bool) -> int:
    progress = TerminalProgress()
    report = purge_trash(store, older_than, progress=progress)
    progress.clear()
    show(report, as_json)
    return 0 if report.clean else 1
