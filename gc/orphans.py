"""The orphans pass: files in blobs/, objects/ and tmp/ that no catalog row explains and that
are older than the store's `orphan_grace` — what a crash leaves behind. The work is fsck's
(`cas.fsck.find_orphans`): an orphan blob is removed under its blob lock after re-checking
that no row appeared, so a put in flight keeps its files.
"""

import time

from casgc.batches import Context
from casgc.report import PassReport
from cas.fsck import find_orphans


def orphans(context: Context) -> PassReport:
    report = PassReport("orphans")
    # File ages are measured on the real clock: a `now` in the future (tests) must not make the
    # files of a put in flight look old.
    found = find_orphans(context.store, context.store.config.orphan_grace, repair=not context.dry_run,
                         now=min(context.now, time.time()))
    report.examined = found.blobs
    for problem in found.problems:
        if problem.not_repaired:
            report.error(problem.describe())
        else:
            report.counts[problem.kind] += 1
    return report
