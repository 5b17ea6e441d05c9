"""What a collector run did, pass by pass: counts, bytes freed, errors, skipped buckets."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from cas.model import iso_time

MAX_MESSAGES = 20  # error messages kept per pass; the count covers all of them


@dataclass
class PassReport:
    name: str
    examined: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # what happened to the examined rows
    bytes_freed: int = 0
    errors: int = 0
    deferred: int = 0  # rows that failed before and wait for their retry time
    skipped_buckets: dict[str, str] = field(default_factory=dict)  # bucket → why its rules cannot run
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str | None = None  # why the pass did not run (a sweep paused by a backup)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)

    def to_json(self) -> dict[str, Any]:
        return {
            "pass": self.name, "examined": self.examined, "counts": dict(self.counts),
            "bytes_freed": self.bytes_freed, "errors": self.errors, "deferred": self.deferred,
            "skipped_buckets": self.skipped_buckets, "messages": self.messages, "seconds": round(self.seconds, 3),
            "note": self.note,
        }

    def summary_line(self) -> str:
        parts = [f"{self.examined} examined"] + [f"{count} {what}" for what, count in sorted(self.counts.items())]
        if self.bytes_freed:
            parts.append(f"{format_bytes(self.bytes_freed)} freed")
        parts.append(f"{self.errors} errors")
        if self.deferred:
            parts.append(f"{self.deferred} deferred")
        if self.skipped_buckets:
            parts.append("buckets skipped: " + ", ".join(sorted(self.skipped_buckets)))
        if self.note:
            parts.append(self.note)
        return f"{self.name}: " + ", ".join(parts) + f" ({self.seconds:.2f}s)"


@dataclass
class RunReport:
    dry_run: bool
    now: float
    passes: list[PassReport] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(report.errors for report in self.passes)

    @property
    def bytes_freed(self) -> int:
        return sum(report.bytes_freed for report in self.passes)

    @property
    def skipped_buckets(self) -> dict[str, str]:
        return {bucket: why for report in self.passes for bucket, why in report.skipped_buckets.items()}

    @property
    def clean(self) -> bool:
        """No row failed and no bucket was skipped."""
        return not self.errors and not self.skipped_buckets

    def get(self, name: str) -> PassReport:
        return next(report for report in self.passes if report.name == name)

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "now": iso_time(self.now),
                "passes": [report.to_json() for report in self.passes],
                "errors": self.errors, "bytes_freed": self.bytes_freed, "skipped_buckets": self.skipped_buckets}

    def lines(self) -> list[str]:
        """Human-readable: problems first, then one line per pass and a total."""
        lines = [f"bucket {bucket} skipped: {why}" for bucket, why in sorted(self.skipped_buckets.items())]
        lines += [f"{report.name}: {message}" for report in self.passes for message in report.messages]
        lines += [report.summary_line() for report in self.passes]
        what = "would free" if self.dry_run else "freed"
        lines.append(f"gc{' (dry run)' if self.dry_run else ''}: {what} {format_bytes(self.bytes_freed)}, "
                     f"{self.errors} errors")
        return lines


def format_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
