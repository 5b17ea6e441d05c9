"""`assetfs fsck`: reconcile the files on disk with the catalog.

Catalog → disk: every live or trashed object has its blob (present, recorded size, and with
--verify-content the right hash) and its alias (a hardlink to the blob, or an accepted copy
when the blob ran out of links) at its place in alias layout 2; one still at its layout-1
place is reported, and `--repair` moves it (cas/layout.py). Disk → catalog: files in blobs/, objects/ and tmp/ that no
row explains are orphans (what a crash leaves behind); they are only touched once older than
the orphan grace, since a put in flight has files without a committed row. Finally each
blob's link count must be 1 + the aliases that link to it + the links that files left in
place explain: staging files and journals in tmp/, and aliases without a row (young ones, a
put in flight or killed made; older ones are reported as orphan_alias, and `--repair` removes
them). Files closed in a mount that was
killed before it committed them are reported, and `--repair` commits them.

Repairs never lose data: a blob is rebuilt only from a copy whose content hashes right, and
an orphan is removed under the blob lock after re-checking that no row appeared.
"""

import filecmp
import os
import re
import stat
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import blake3

from cas import mounts
from cas.blobtree import fsync_path
from cas.catalog import Transaction
from cas.catalog.base import in_list
from cas.faults import crash_point
from cas.store import ZERO_ID, Store
from cas.writeback import LOST_FOUND_BUCKET, abandoned_journals, is_journal, recover, save_unreadable

HASH_NAME = re.compile(r"[0-9a-f]{64}")
SHARD_NAME = re.compile(r"[0-9a-f]{2}")
ORPHAN_KINDS = {"orphan_blob", "orphan_alias", "orphan_staging"}


@dataclass
class Problem:
    kind: str
    path: str
    detail: str
    object_id: str | None = None
    repaired: bool = False
    not_repaired: str | None = None  # why --repair could not fix it

    @property
    def orphan(self) -> bool:
        return self.kind in ORPHAN_KINDS

    def describe(self) -> str:
        state = "repaired" if self.repaired else (f"NOT repaired: {self.not_repaired}" if self.not_repaired else "")
        subject = f" (object {self.object_id})" if self.object_id else ""
        return f"{self.kind}: {self.path}{subject}: {self.detail}" + (f" — {state}" if state else "")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "orphan": self.orphan}


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    objects: int = 0
    blobs: int = 0
    unreferenced_blobs: int = 0  # blobs no object uses: not damage, the collector frees them

    @property
    def clean(self) -> bool:
        return all(problem.repaired for problem in self.problems)

    def summary(self) -> dict[str, Any]:
        kinds = Counter(problem.kind for problem in self.problems)
        return {
            "objects": self.objects, "blobs": self.blobs, "unreferenced_blobs": self.unreferenced_blobs,
            "problems": len(self.problems), "repaired": sum(problem.repaired for problem in self.problems),
            "kinds": dict(kinds), "clean": self.clean,
        }

    def summary_line(self) -> str:
        numbers = self.summary()
        line = f"fsck: checked {self.objects} objects and {self.blobs} blobs: "
        if not self.problems:
            return line + "clean"
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(numbers["kinds"].items()))
        line += f"{numbers['problems']} problems ({kinds}), {numbers['repaired']} repaired"
        if any(problem.not_repaired for problem in self.problems):
            return line + "; some could not be repaired (see above)"
        return line if self.clean else line + "; 'assetfs fsck --repair' fixes what it can"


def hash_file(path: Path) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if path.stat().st_size:
        hasher.update_mmap(path)
    return hasher.hexdigest()


class Checker:
    def __init__(self, store: Store, verify_content: bool, repair: bool, orphan_grace: float,
                 now: float | None = None, link_counts: bool = True) -> None:
        self.store = store
        self.tree = store.tree
        self.verify_content = verify_content
        self.repair = repair
        self.cutoff = (time.time() if now is None else now) - orphan_grace
        self.link_counts = link_counts  # needs check_objects to have counted the aliases first
        self.report = Report()
        self.link_aliases: Counter[str] = Counter()  # hash → aliases that are hardlinks to its blob
        self.checked_blobs: dict[str, bool] = {}  # hash → blob is good
        # inode → files outside the rows' aliases that may be links to a blob, left in place:
        # staging files and journals in tmp/ (a put in flight links its staged copy as the blob
        # before it commits, cas/ahead.py), and alias folders without a row (a put in flight, or
        # killed, made them ahead of its commit: young ones are left alone, older ones reported
        # as orphan_alias). Their links are not a blob's link_count problem.
        self.known_links: Counter[int] = Counter()

    def problem(self, kind: str, path: Path, detail: str, object_id: str | None = None) -> Problem:
        found = Problem(kind, str(path.relative_to(self.store.root)), detail, object_id)
        self.report.problems.append(found)
        return found

    # catalog → disk ------------------------------------------------------------------------

    def check_objects(self) -> None:
        sql = "select id, bucket, hash, size, filename from objects where id > :after order by id limit :limit"
        for rows in self.store.catalog.pages(sql, {}, key="id", start=ZERO_ID):
            for row in rows:
                self.report.objects += 1
                self.check_blob(row)
                self.check_alias(row)

    def check_blob(self, row: dict[str, Any]) -> None:
        hash_hex, size = row["hash"], row["size"]
        if hash_hex in self.checked_blobs:
            return
        blob = self.tree.blob_path(hash_hex)
        actual = self.tree.blob_size(hash_hex)
        if actual is None:
            found = self.problem("missing_blob", blob, f"the blob of {size} bytes is missing", row["id"])
        elif actual != size:
            found = self.problem("blob_size", blob, f"{actual} bytes instead of {size}", row["id"])
        elif self.verify_content and hash_file(blob) != hash_hex:
            found = self.problem("blob_content", blob, "the content no longer matches its hash", row["id"])
        else:
            self.checked_blobs[hash_hex] = True
            return
        self.checked_blobs[hash_hex] = False
        if self.repair:
            self.rebuild_blob(found, hash_hex, size)

    def rebuild_blob(self, found: Problem, hash_hex: str, size: int) -> None:
        """Reinstall a damaged or missing blob from an alias copy whose content is right."""

        def rebuild(tx: Transaction) -> bool:
            tx.lock_blob(hash_hex)
            blob = self.tree.blob_path(hash_hex)
            users = tx.all("select id, bucket, hash, filename from objects where hash = :hash", {"hash": hash_hex})
            copies = [folder / other["filename"] for other in users
                      for folder in (self.tree.alias_dir(other["bucket"], other["id"]),
                                     self.tree.old_alias_dir(other["bucket"], other["id"]))]
            for alias in copies:
                try:
                    if alias.stat().st_size != size or (blob.exists() and os.path.samefile(alias, blob)):
                        continue
                except FileNotFoundError:
                    continue
                if hash_file(alias) != hash_hex:
                    continue
                blob.parent.mkdir(parents=True, exist_ok=True)
                self.tree.copy_blob_to(alias, blob)
                fsync_path(blob.parent)
                for user in users:
                    self.relink_alias(user)
                return True
            return False

        if self.store.catalog.run(rebuild):
            found.repaired = True
            self.checked_blobs[hash_hex] = True
        else:
            found.not_repaired = "no intact copy of this content is left; the objects using it are damaged"

    def relink_alias(self, row: dict[str, Any]) -> None:
        """Make the alias a hardlink to the blob, replacing what is there in one rename (a
        copy where the blob has run out of links); a layout-1 leftover of it goes."""
        if not self.tree.relink_alias(row["hash"], row["bucket"], row["id"], row["filename"]):
            alias = self.tree.alias_path(row["bucket"], row["id"], row["filename"])
            self.tree.copy_blob_to(self.tree.blob_path(row["hash"]), alias)
        self.tree.remove_old_alias(row["bucket"], row["id"])

    def check_alias(self, row: dict[str, Any]) -> None:
        alias = self.tree.alias_path(row["bucket"], row["id"], row["filename"])
        alias_stat = _lstat(alias)
        if alias_stat is None:
            old = self.tree.old_alias_dir(row["bucket"], row["id"]) / row["filename"]
            old_stat = _lstat(old)
            if old_stat is not None:
                self.check_old_alias(row, old, old_stat)
                return
            alias_stat = _lstat(alias)  # moved there meanwhile, by a layout migration
        if alias_stat is None:
            found = self.problem("missing_alias", alias, "the object's alias is missing", row["id"])
            self.fix_alias(found, row)
            return
        content = self.alias_content(row, alias, alias_stat)
        if content == "linkable copy":
            # a copy where a link could be: a copy of the store that did not keep hard
            # links (rsync -a without -H), or an alias replaced by hand
            found = self.problem("alias_copy", alias, "the alias is a copy, not a hard link of its blob "
                                 "(copied without keeping hard links: rsync without -H?)", row["id"])
            blob = self.tree.blob_path(row["hash"])
            if self.repair and not filecmp.cmp(alias, blob, shallow=False) and hash_file(blob) != row["hash"]:
                # only sizes were compared so far: the blob is damaged, and this copy may be
                # the intact one left, which linking would throw away; rebuild the blob first
                self.checked_blobs[row["hash"]] = False
                damaged = self.problem("blob_content", blob, "the content no longer matches its hash", row["id"])
                self.rebuild_blob(damaged, row["hash"], row["size"])
                found.repaired = damaged.repaired
                found.not_repaired = damaged.not_repaired
                return
            self.fix_alias(found, row)
        elif content == "other":
            found = self.problem("alias_mismatch", alias, "the alias is not the object's content", row["id"])
            self.fix_alias(found, row)

    def alias_content(self, row: dict[str, Any], alias: Path, alias_stat: os.stat_result) -> str:
        """"link" (a hardlink to the object's blob, counted), "copy" (of its content, accepted
        where the blob is missing or has run out of links), "linkable copy" (one that could be
        a link), or "other"."""
        if not stat.S_ISREG(alias_stat.st_mode):
            return "other"
        blob = self.tree.blob_path(row["hash"])
        try:
            if os.path.samefile(alias, blob):
                self.link_aliases[row["hash"]] += 1
                return "link"
        except FileNotFoundError:
            pass  # the blob is missing: reported by check_blob
        if alias_stat.st_size != row["size"] or (self.verify_content and hash_file(alias) != row["hash"]):
            return "other"
        if self.tree.blob_size(row["hash"]) is None or not self.tree.links_left(blob):
            return "copy"  # the blob is missing (check_blob), or ran out of links: a copy is all there can be
        return "linkable copy"

    def check_old_alias(self, row: dict[str, Any], old: Path, old_stat: os.stat_result) -> None:
        """An alias where layout 1 kept it (cas/layout.py): reported; `--repair` moves it, as
        `assetfs migrate` does (or relinks it at the new place when it is wrong)."""
        if self.alias_content(row, old, old_stat) == "other":
            found = self.problem("alias_mismatch", old, "the alias (at its layout-1 place) is not the object's "
                                 "content", row["id"])
            self.fix_alias(found, row)
            return
        found = self.problem("old_alias_place", old, "the alias is where alias layout 1 kept it; "
                             "'assetfs migrate' moves it", row["id"])
        if self.repair:
            pending = self.tree.pending_sync()
            self.tree.move_old_alias(row["bucket"], row["id"], pending)
            pending.flush()
            found.repaired = True

    def fix_alias(self, found: Problem, row: dict[str, Any]) -> None:
        if not self.repair:
            return
        if not self.checked_blobs.get(row["hash"]):
            found.not_repaired = "the blob it would link to is damaged"
            return
        self.relink_alias(row)
        self.link_aliases[row["hash"]] += 1
        found.repaired = True

    def check_blob_rows(self) -> None:
        """Blob rows whose file is gone and that no object uses: harmless, but stale."""
        sql = ("select hash from blobs b where hash > :after and not exists "
               "(select 1 from objects o where o.hash = b.hash) order by hash limit :limit")
        for rows in self.store.catalog.pages(sql, {}, key="hash", start=""):
            for row in rows:
                if self.tree.blob_size(row["hash"]) is not None:
                    self.report.unreferenced_blobs += 1
                    continue
                found = self.problem("stale_blob_row", self.tree.blob_path(row["hash"]),
                                     "a blob row without file or object")
                if self.repair:
                    found.repaired = self.store.catalog.run(lambda tx, h=row["hash"]: self._drop_stale_row(tx, h))

    def _drop_stale_row(self, tx: Transaction, hash_hex: str) -> bool:
        tx.lock_blob(hash_hex)
        if self.tree.blob_size(hash_hex) is not None:
            return False
        tx.execute("delete from blobs where hash = :hash and not exists "
                   "(select 1 from objects where hash = :hash)", {"hash": hash_hex})
        return True

    # disk → catalog ------------------------------------------------------------------------

    def is_young(self, path: Path) -> bool:
        try:
            return path.lstat().st_mtime > self.cutoff
        except FileNotFoundError:
            return True  # gone meanwhile: nothing to do

    def check_blob_files(self) -> None:
        leaves, strays = _levels(self.tree.blobs, depth=2)
        self.report_strays(strays)
        for leaf in leaves:
            entries = list(os.scandir(leaf))
            hashes = [entry.name for entry in entries if HASH_NAME.fullmatch(entry.name)]
            known = self._known(tx_sql="select hash as key from blobs where hash in ({})", keys=hashes)
            for entry in entries:
                path = Path(entry.path)
                if not HASH_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False) \
                        or path.parent != self.tree.blob_path(entry.name).parent:
                    if not self.is_young(path):
                        found = self.problem("stray_file", path, "not a blob (wrong name or place)")
                        self.remove_stray(found, path)
                    continue
                self.report.blobs += 1
                if entry.name not in known:
                    if not self.is_young(path):
                        found = self.problem("orphan_blob", path, "a blob file with no catalog row")
                        if self.repair:
                            found.repaired = self.store.catalog.run(lambda tx, h=entry.name: self._drop_orphan(tx, h))
                            if not found.repaired:
                                found.not_repaired = "a row appeared meanwhile; the blob is in use"
                    continue
                if self.link_counts:
                    self.check_link_count(path, entry.name)

    def _drop_orphan(self, tx: Transaction, hash_hex: str) -> bool:
        tx.lock_blob(hash_hex)
        if tx.one("select 1 as found from blobs where hash = :hash", {"hash": hash_hex}) is not None:
            return False
        self.tree.remove_blob(hash_hex)
        crash_point("orphans:blob-removed")
        return True

    def check_link_count(self, path: Path, hash_hex: str) -> None:
        status = path.stat()
        expected = 1 + self.link_aliases[hash_hex] + self.known_links[status.st_ino]
        if status.st_nlink != expected:
            found = self.problem("link_count", path, f"{status.st_nlink} links, expected {expected} (1 + its aliases "
                                 "+ staging files + aliases without a row): hard links outside the store's aliases, "
                                 "or aliases changed during the check")
            if self.repair:
                found.not_repaired = "assetfs does not remove hard links it did not make"

    def check_alias_files(self) -> None:
        """objects/<bucket>/wx/yz/<id> (layout 2). The first level may also hold alias folders
        of layout 1 (objects/<bucket>/<id[0:2]>/<id>): check_alias reports those of a row, and
        one beside its alias at the new place is a leftover, treated as an orphan."""
        shards, strays = _levels(self.tree.objects, depth=2)
        self.report_strays(strays)
        for shard in shards:
            entries = list(os.scandir(shard))
            subshards = [entry for entry in entries if SHARD_NAME.fullmatch(entry.name)
                         and entry.is_dir(follow_symlinks=False)]
            self.check_alias_folders(shard.parent.name, [entry for entry in entries if entry not in subshards],
                                     old_layout=shard.name)
            for subshard in subshards:
                self.check_alias_folders(shard.parent.name, list(os.scandir(subshard.path)))

    def check_alias_folders(self, bucket: str, entries: list[os.DirEntry], old_layout: str | None = None) -> None:
        """Alias folders in one shard folder; `old_layout`: the first level's name, whose
        folders are at their layout-1 place."""
        ids = [entry.name for entry in entries if _is_uuid(entry.name)]
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):  # a layout-1 folder may hold all of a bucket's
            rows |= self._rows("select id, bucket, filename from objects where id in ({})", ids[start:start + 500])
        for entry in entries:
            path = Path(entry.path)
            row = rows.get(entry.name)
            if row is not None and row["bucket"] == bucket and old_layout == entry.name[0:2] \
                    and _lstat(self.tree.alias_dir(bucket, row["id"])) is None:
                continue  # an alias at its layout-1 place: check_alias's
            in_place = row is not None and row["bucket"] == bucket and path == self.tree.alias_dir(bucket, row["id"])
            if not in_place or not entry.is_dir(follow_symlinks=False):
                if not self.is_young(path):
                    found = self.problem("orphan_alias", path, "an alias with no object row" if row is None else
                                         "an alias folder where its object's alias is not (a leftover)")
                    self.remove_stray(found, path)
                    if found.repaired:
                        continue
                self.count_known_links(path)
                continue
            try:
                inners = list(os.scandir(path))
            except FileNotFoundError:
                continue  # purged meanwhile
            for inner in inners:
                if inner.name == row["filename"]:
                    continue
                if not self.is_young(Path(inner.path)):
                    found = self.problem("stray_file", Path(inner.path), "an extra file in an alias folder",
                                         row["id"])
                    self.remove_stray(found, Path(inner.path))
                    if found.repaired:
                        continue
                self.count_known_links(Path(inner.path))

    def check_journals(self) -> None:
        """Files closed in a mount that ended before committing them (cas/writeback.py);
        `--repair` commits them, as the next mount would. A running mount's are its own."""
        for journal in abandoned_journals(self.store, forget_empty=self.repair):
            entries = journal.entries()
            found = None if not entries else self.problem(
                "uncommitted_closed", journal.folder, f"{len(entries)} files closed in a mount that ended, not committed yet")
            unreadable = journal.unreadable()
            strays = [self.problem("unreadable_closed", path,
                                   f"a file in a mount's journal that is no entry (--repair saves it to bucket "
                                   f"{LOST_FOUND_BUCKET})") for path in unreadable]
            if not self.repair:
                journal.release()
                continue
            for stray, result in zip(strays, save_unreadable(self.store, journal)):
                stray.repaired = True
                stray.detail = f"saved as {LOST_FOUND_BUCKET}/{result.name}"
            _, failed = recover(self.store, journal)  # an empty journal is only removed
            if found is not None:
                if failed:
                    found.not_repaired = f"{failed} of them could not be committed (see the log)"
                else:
                    found.repaired = True

    def check_staging(self) -> None:
        running = {row.id for row in mounts.registered(self.store)}
        for entry in os.scandir(self.tree.tmp):
            path = Path(entry.path)
            if mounts.lock_file_mount(path) in running:
                continue  # a registered mount's liveness lock (cas/mounts.py)
            if is_journal(path):
                self.count_known_links(path)  # otherwise check_journals's
                continue
            if not self.is_young(path):
                found = self.problem("orphan_staging", path, "a staging file left by an interrupted write")
                self.remove_stray(found, path)
                if found.repaired:
                    continue
            self.count_known_links(path)

    def count_known_links(self, path: Path) -> None:
        """Count the regular files at `path` (a file, or the files of a folder) as known links."""
        try:
            if not path.is_dir() or path.is_symlink():
                info = path.lstat()
                if stat.S_ISREG(info.st_mode):
                    self.known_links[info.st_ino] += 1
                return
            entries = list(os.scandir(path))
        except FileNotFoundError:
            return  # committed, removed, or its mount ended, meanwhile
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    self.known_links[entry.inode()] += 1
            except FileNotFoundError:
                pass

    def check_disk(self) -> None:
        """Disk → catalog: aliases, staging and blobs that no row explains."""
        self.check_alias_files()
        self.check_staging()
        self.check_blob_files()

    def report_strays(self, paths: list[Path]) -> None:
        for path in paths:
            if not self.is_young(path):
                self.remove_stray(self.problem("stray_file", path, "not part of the store's layout"), path)

    def remove_stray(self, found: Problem, path: Path) -> None:
        """Remove a file or folder no catalog row explains (aliases and staging hold copies only)."""
        if not self.repair:
            return
        try:
            if path.is_dir() and not path.is_symlink():
                for inner in path.iterdir():
                    self.remove_stray(found, inner)
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError as error:
            found.not_repaired = f"cannot remove it: {error.strerror or error}"
            return
        found.repaired = found.not_repaired is None

    # helpers -------------------------------------------------------------------------------

    def _rows(self, sql: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        placeholders, params = in_list(keys, "k")
        rows = self.store.catalog.run(lambda tx: tx.all(sql.format(placeholders), params), write=False)
        return {next(iter(row.values())): row for row in rows}

    def _known(self, tx_sql: str, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            found |= set(self._rows(tx_sql, keys[start:start + 500]))
        return found


def _levels(top: Path, depth: int) -> tuple[list[Path], list[Path]]:
    """The folders `depth` levels below `top` (blobs/ab/cd, objects/<bucket>/<xx>), and the
    files met on the way there, which the layout has no place for."""
    level, strays = [top], []
    for _ in range(depth):
        entries = [entry for folder in level for entry in os.scandir(folder)]
        level = sorted(Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False))
        strays += [Path(entry.path) for entry in entries if not entry.is_dir(follow_symlinks=False)]
    return level, strays


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _is_uuid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


def check_store(store: Store, verify_content: bool = False, repair: bool = False,
                orphan_grace: float = 3600.0) -> Report:
    checker = Checker(store, verify_content, repair, orphan_grace)
    checker.check_journals()
    checker.check_objects()
    checker.check_blob_rows()
    checker.check_disk()
    return checker.report


def find_orphans(store: Store, orphan_grace: float, repair: bool, now: float | None = None) -> Report:
    """Only the disk → catalog half of fsck: files no catalog row explains and older than the
    orphan grace (what crashes leave), removed with `repair`. The garbage collector's orphans
    pass runs this; link counts are not checked, since that needs every object read first."""
    checker = Checker(store, verify_content=False, repair=repair, orphan_grace=orphan_grace, now=now,
                      link_counts=False)
    checker.check_disk()
    return checker.report
