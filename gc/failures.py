"""Rows a pass failed on, in `gc_failures`: counted, and retried later with a growing delay.

A failing row never stops a pass (docs/design.md invariant 7); recording it keeps the next passes
from spending their time on it again at once, while a fixed cause heals by itself.
"""

from cas.catalog import Transaction

FIRST_DELAY = 60.0
MAX_DELAY = 86400.0


def retry_delay(attempts: int) -> float:
    """60 s after the first failure, doubling with each one, at most a day."""
    return min(FIRST_DELAY * 2 ** (attempts - 1), MAX_DELAY)


def join(item: str) -> str:
    """SQL joining a scanned table (alias `t`) to its failure record, keyed by `item`."""
    return f"left join gc_failures f on f.pass = :pass and f.item = {item}"


DUE = "(f.retry_after is null or f.retry_after <= :now)"
ATTEMPTS = "coalesce(f.attempts, 0) as failed_attempts"


def record(tx: Transaction, pass_name: str, item: str, attempts_before: int, error: str, now: float) -> None:
    attempts = attempts_before + 1
    tx.execute(
        "insert into gc_failures (pass, item, attempts, error, failed_at, retry_after) "
        "values (:pass, :item, :attempts, :error, :now, :retry_after) on conflict (pass, item) do update set "
        "attempts = :attempts, error = :error, failed_at = :now, retry_after = :retry_after",
        {"pass": pass_name, "item": item, "attempts": attempts, "error": error[:2000], "now": now,
         "retry_after": now + retry_delay(attempts)},
    )


def clear(tx: Transaction, item: str, pass_name: str | None = None) -> None:
    """Forget the failures of `item` (in one pass, or in all when the row is gone)."""
    if pass_name is None:
        tx.execute("delete from gc_failures where item = :item", {"item": item})
    else:
        tx.execute("delete from gc_failures where pass = :pass and item = :item", {"pass": pass_name, "item": item})


def deferred(tx: Transaction, pass_name: str, now: float) -> int:
    """How many rows of the pass wait for their retry time."""
    return tx.value("select count(*) as n from gc_failures where pass = :pass and retry_after > :now",
                    {"pass": pass_name, "now": now})
