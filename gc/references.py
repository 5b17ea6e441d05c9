"""What keeps an object alive: its names, its holds, and its bucket's rules (docs/design.md, "Model").

Rules are the operator's SQL, run in the catalog database with the object's id as `:id`
(`select 1 from profile where photo_id = :id`), so an application's own tables can keep its
objects alive. A rule counts as a reference when it returns a row whose first column is not
false or zero (so `select 1 …`, `select exists (…)` and `select count(*) …` all work).

A rule that fails (syntax, a missing table, a run-time error, an attempt to write, or no
answer within `[gc] rule_timeout`) makes its whole bucket skipped for the rest of the pass:
an object is never collected because its rules could not say. Each rule runs read-only, with
a deadline, inside a savepoint (`Transaction.guarded_one`): it cannot change the catalog,
and on SQLite it holds the write lock the pass's batch holds for at most that long
(docs/security.md, "Bucket rules cannot write, and end").
"""

import logging

from cas.catalog import Catalog, Transaction
from cas.catalog.base import Row, RuleError
from cas.config import Config
from cas.durations import format_duration
from cas.errors import BadInput
from cas.validate import check_bucket

log = logging.getLogger("assetfs.gc")


class BucketSkipped(Exception):
    """The object's bucket has rules that cannot run; leave the object alone."""


class UnknownBucket(Exception):
    """The object's bucket is not a valid name, or has neither a catalog row nor configuration."""


def _rule_query(rule: str) -> str:
    """The rule as a subquery: anything but a query (an update, two statements) fails to parse."""
    return f"select * from ({rule.strip().rstrip(';')}) as rule_rows limit 1"


def _says_referenced(row: Row | None) -> bool:
    if row is None:
        return False
    value = next(iter(row.values()), None)
    return not (isinstance(value, (bool, int, float)) and value == 0)


class References:
    """Reference checks for one pass; remembers which buckets' rules failed."""

    def __init__(self, catalog: Catalog, config: Config, known_buckets: set[str]) -> None:
        self.catalog = catalog
        self.config = config
        self.known_buckets = known_buckets | set(config.buckets)
        self.broken: dict[str, str] = {}  # bucket → why its rules cannot run

    @classmethod
    def load(cls, catalog: Catalog, config: Config) -> "References":
        rows = catalog.run(lambda tx: tx.all("select name from buckets"), write=False)
        return cls(catalog, config, {row["name"] for row in rows})

    def check_bucket(self, tx: Transaction, bucket: str) -> None:
        """UnknownBucket for a bucket the store cannot have made: its object is a bad row."""
        try:
            check_bucket(bucket)
        except BadInput as error:
            raise UnknownBucket(str(error)) from None
        if bucket in self.known_buckets:
            return
        if tx.one("select 1 as found from buckets where name = :bucket", {"bucket": bucket}) is not None:
            self.known_buckets.add(bucket)  # made since the pass began
        else:
            raise UnknownBucket(f"unknown bucket {bucket!r}: it has no catalog row and no configuration")

    def referenced(self, tx: Transaction, row: Row) -> bool:
        """Whether anything refers to the object `row` (id, bucket); BucketSkipped when its
        bucket's rules cannot run."""
        bucket, object_id = row["bucket"], row["id"]
        if bucket in self.broken:
            raise BucketSkipped(bucket)
        if tx.one("select 1 as found from nodes n join entries e on e.node_id = n.id where n.object_id = :id limit 1",
                  {"id": object_id}) is not None:
            return True
        if tx.one("select 1 as found from holds where object_id = :id limit 1", {"id": object_id}) is not None:
            return True
        return any(self._rule_says(tx, bucket, rule, object_id) for rule in self.config.bucket(bucket).rules)

    def _rule_says(self, tx: Transaction, bucket: str, rule: str, object_id: str) -> bool:
        timeout = self.config.gc.rule_timeout
        try:
            found = tx.guarded_one(_rule_query(rule), {"id": object_id}, timeout)
        except RuleError as error:
            why = f"no answer within {format_duration(timeout)}" if error.timed_out else f"failed: {error}"
            self.broken[bucket] = f"rule {rule!r} {why}"
            log.error("bucket %s skipped: %s", bucket, self.broken[bucket])
            raise BucketSkipped(bucket) from None
        return _says_referenced(found)
