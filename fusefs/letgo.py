"""Objects that lost their last name through this mount: their reference check runs within
seconds, in the background (`casgc.recheck`; docs/concurrency.md, "A name let go").

The catalog reports such objects after each commit that removed a name (`Catalog.on_released`,
from whichever worker thread committed); a trio task checks what has gathered every
INTERVAL_S, in a worker thread. An object whose blob a put holds just then is checked again
next time; what is left at unmount is checked before the mount ends, and what a killed
mount left is checked by the next one (`casgc.recheck.let_go_waiting`).
"""

from __future__ import annotations

import logging
import threading

import trio

from cas.store import Store
from casgc.recheck import let_go_waiting, recheck

log = logging.getLogger("assetfs.mount")

INTERVAL_S = 0.5


class LetGo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: set[str] = set()
        self._lock = threading.Lock()
        store.catalog.on_released = self.add

    def add(self, object_ids: set[str]) -> None:
        with self._lock:
            self._waiting |= object_ids

    def _take(self) -> set[str]:
        with self._lock:
            taken, self._waiting = self._waiting, set()
        return taken

    def check(self) -> None:
        """Check what is waiting (blocks: a worker thread, or after the mount ended)."""
        taken = self._take()
        if not taken:
            return
        try:
            report = recheck(self.store, taken)
        except Exception:
            log.exception("checking %d objects that lost their last name failed; the collector will", len(taken))
            return
        if report.busy:
            self.add(set(report.busy))

    async def run(self) -> None:
        """Check what an earlier view left unchecked, then what gathers, every INTERVAL_S,
        until cancelled."""
        self.add(set(await trio.to_thread.run_sync(let_go_waiting, self.store)))
        while True:
            await trio.sleep(INTERVAL_S)
            await trio.to_thread.run_sync(self.check)
