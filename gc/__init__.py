"""assetfs's garbage collector (import name `casgc`; the folder is gc/, see pyproject.toml).

`run_once(store)` runs every pass once; `watch(store, stop)` runs them until stopped;
`Collector(store)` runs `watch` in a thread (for `assetfs mount --gc`); `purge_trash` is the
operator's `assetfs trash purge`. docs/concurrency.md says what makes the passes safe.
"""

from casgc.report import PassReport, RunReport
from casgc.runner import Collector, purge_trash, run_once, watch

__all__ = ["Collector", "PassReport", "RunReport", "purge_trash", "run_once", "watch"]
