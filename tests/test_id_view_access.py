"""With --allow-other, the id view grants no more than the object's named files (issue 11,
finding 14): `<mnt>/<bucket>/<id>/<filename>` takes the owner and mode of the named file(s)
that refer to the object (only what all of them grant), 0400 for the mount's owner when none
does or their owners differ; the trash view likewise from the names the object had. Checked
as other users through a real --allow-other mount, where the kernel enforces the modes."""

from __future__ import annotations

import io
import stat

import pytest

from fusefs.view import id_view_access
from cas.model import ObjectInfo
from cas.names import Owner
from mounting import Mount
from test_mount_options import OTHER, OWNER, as_user, shared_mount  # noqa: F401 (a fixture)

ROOT = Owner(0, 0)


@pytest.mark.parametrize("named, expected", [
    ([], (0o400, 0, 0)),
    ([(0o600, 7, 8)], (0o400, 7, 8)),
    ([(0o644, 7, 8)], (0o444, 7, 8)),
    ([(0o755, 7, 8)], (0o555, 7, 8)),
    ([(0o644, 7, 8), (0o640, 7, 8)], (0o440, 7, 8)),
    ([(0o644, 7, 8), (0o644, 9, 9)], (0o444, 0, 0)),
    ([(0o644, 7, 8), (0o600, 9, 9)], (0o400, 0, 0)),
    ([(0o666, 7, 8), (0o777, 7, 9)], (0o444, 0, 0)),
])
def test_id_view_access_rule(named: list[tuple[int, int, int]], expected: tuple[int, int, int]) -> None:
    assert id_view_access(ROOT, named) == expected


def object_of(mount: Mount, name: str) -> ObjectInfo:
    with mount.store() as store:
        [info] = [info for info in store.list("photos") if name in info.names]
    return info


def test_the_id_view_grants_no_more_than_the_named_file(shared_mount: Mount) -> None:
    shared = shared_mount.path / "photos" / "shared"
    shared.mkdir(parents=True)
    shared.chmod(0o1777)
    private, public = shared / "private.txt", shared / "public.txt"
    for path, umask, text in ((private, "077", "secret"), (public, "022", "open")):
        made = as_user(OWNER, "sh", "-c", f'umask {umask}; echo {text} > "{path}"')
        assert made.returncode == 0, made.stderr
    private_id, public_id = object_of(shared_mount, "shared/private.txt").id, object_of(shared_mount, "shared/public.txt").id
    by_id = shared_mount.path / "photos"

    private_view = by_id / private_id / "private.txt"
    info = private_view.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (OWNER, OWNER, 0o400)
    refused = as_user(OTHER, "cat", private_view)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    assert as_user(OWNER, "cat", private_view).stdout == "secret\n"

    public_view = by_id / public_id / "public.txt"
    assert stat.S_IMODE(public_view.stat().st_mode) == 0o444
    assert as_user(OTHER, "cat", public_view).stdout == "open\n"
    # a chmod of the named file through the mount takes effect in the id view at once, not
    # after the attribute timeout (root chmods here: in-process, right after the stat above)
    assert stat.S_IMODE(public_view.stat().st_mode) == 0o444
    public.chmod(0o600)
    assert stat.S_IMODE(public_view.stat().st_mode) == 0o400
    assert as_user(OTHER, "cat", public_view).returncode != 0
    assert as_user(OTHER, "cat", public).returncode != 0

    # the trash view keeps the modes of the names the object had
    with shared_mount.store() as store:
        store.delete(private_id)
    trashed_view = shared_mount.path / ".trash" / "photos" / private_id / "private.txt"
    assert stat.S_IMODE(trashed_view.stat().st_mode) == 0o400 and trashed_view.stat().st_uid == OWNER
    assert as_user(OTHER, "cat", trashed_view).returncode != 0
    assert as_user(OWNER, "cat", trashed_view).stdout == "secret\n"


def test_objects_without_a_name_or_with_owners_that_differ_are_the_mount_owners(shared_mount: Mount) -> None:
    bucket = shared_mount.path / "photos"
    bucket.mkdir()
    bucket.chmod(0o1777)
    with shared_mount.store() as store:
        unnamed = store.put("photos", io.BytesIO(b"no name")).object
    unnamed_view = bucket / unnamed.id / unnamed.filename
    info = unnamed_view.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o400)
    assert as_user(OTHER, "cat", unnamed_view).returncode != 0
    assert unnamed_view.read_bytes() == b"no name"  # the mount's owner (root) reads it

    # the same content named by two users: one object (the bucket deduplicates), two owners
    for uid, name in ((OWNER, "mine.txt"), (OTHER, "theirs.txt")):
        made = as_user(uid, "sh", "-c", f'umask 022; echo same > "{bucket / name}"')
        assert made.returncode == 0, made.stderr
    shared = object_of(shared_mount, "mine.txt")
    assert shared.id == object_of(shared_mount, "theirs.txt").id
    shared_view = bucket / shared.id / shared.filename
    info = shared_view.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o444)  # both grant others read
    assert as_user(OTHER, "cat", shared_view).stdout == "same\n"
    assert as_user(OWNER, "chmod", "600", bucket / "mine.txt").returncode == 0
    assert stat.S_IMODE(shared_view.stat().st_mode) == 0o400
    assert as_user(OTHER, "cat", shared_view).returncode != 0
    assert as_user(OTHER, "cat", bucket / "theirs.txt").stdout == "same\n"  # their own name still reads
