"""Running the collector: every pass once (`run_once`), periodically until stopped (`watch`),
or in a background thread beside other work (`Collector`, for `assetfs mount --gc`)."""

import logging
import threading
import time
from collections.abc import Callable

from casgc import passes
from casgc.batches import Context, Progress
from casgc.orphans import orphans
from cas.catalog.base import first_line
from casgc.references import References
from casgc.report import PassReport, RunReport
from cas.store import Store

log = logging.getLogger("assetfs.gc")

Pass = Callable[[Context], PassReport]
PASSES: tuple[tuple[str, Pass], ...] = (
    ("touched", passes.touched),
    ("expired", passes.expired),
    ("purge", passes.purge),
    ("sweep", passes.sweep),
    ("orphans", orphans),
)


def run_once(store: Store, now: float | None = None, dry_run: bool = False, stop: threading.Event | None = None,
             progress: Progress | None = None) -> RunReport:
    """Every pass once, in order, with cutoffs from one `now` (default: the current time)."""
    return _run(store, PASSES, now, dry_run, stop, progress)


def purge_trash(store: Store, older_than: float, now: float | None = None,
                progress: Progress | None = None) -> RunReport:
    """`assetfs trash purge`: purge trashed objects deleted more than `older_than` seconds ago,
    whatever their grace, then sweep the blobs that freed."""
    now = time.time() if now is None else now
    chosen = (("purge", lambda context: passes.purge(context, deleted_before=now - older_than)),
              ("sweep", passes.sweep))
    return _run(store, chosen, now, False, None, progress)


def _run(store: Store, chosen: tuple[tuple[str, Pass], ...], now: float | None, dry_run: bool,
         stop: threading.Event | None, progress: Progress | None) -> RunReport:
    now = time.time() if now is None else now
    context = Context(store, now, References.load(store.catalog, store.config), dry_run, stop, progress)
    report = RunReport(dry_run=dry_run, now=now)
    for name, run_pass in chosen:
        if context.stopped:
            break
        started = time.monotonic()
        try:
            result = run_pass(context)
        except Exception as error:  # one pass failing (a folder it cannot read) must not stop the others
            log.exception("gc %s failed", name)
            result = PassReport(name)
            result.error(f"the pass failed: {first_line(error)}")
        result.seconds = time.monotonic() - started
        report.passes.append(result)
    return report


def watch(store: Store, stop: threading.Event, interval: float | None = None,
          on_report: Callable[[RunReport], None] | None = None) -> None:
    """Run every pass, then wait `interval` (default: the store's `[gc] interval`), until
    `stop` is set; a run that fails is logged and tried again after the interval."""
    interval = store.config.gc.interval if interval is None else interval
    while not stop.is_set():
        try:
            report = run_once(store, stop=stop)
        except Exception:
            log.exception("gc run failed; trying again in %ss", interval)
        else:
            if on_report is not None:
                on_report(report)
        stop.wait(interval)


def log_report(report: RunReport) -> None:
    for line in report.lines():
        log.info("%s", line)


class Collector:
    """The collector in a daemon thread, sharing the caller's (thread-safe) Store.

        collector = Collector(store)   # after the mount is ready
        collector.start()
        ...
        collector.stop()               # before the store is closed; waits for the current batch
    """

    def __init__(self, store: Store, interval: float | None = None) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=watch, args=(store, self._stop, interval, log_report),
                                        name="assetfs-gc", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
