"""The POSIX that tools rely on, through a real mount (issue 9, points 1–3): symlinks, mknod
of regular files, FIFOs, sockets and devices, atime, ctime and link counts; and the tools that
need them: `git clone`, `cp -a`, `rsync -aHAX`, `tar --xattrs -x`.

Every test runs on both catalogs; the `mounted` fixture checks after the unmount that the
daemon logged no error and that `assetfs fsck` is clean (symlink and special nodes hold no
object: nothing for fsck to find, nothing for the collector to collect).
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_cli
from mounting import Mount, expect_errno, run, start_mount, stop_mount

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3"),
]

ATTR_TIMEOUT_S = 1.0  # fusefs.operations.SHORT


def make_tree(root: Path) -> Path:
    """Folders, files, symlinks (relative, absolute, dangling, to a folder, with old times),
    hard links, user xattrs, an executable and a FIFO."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_text("hello\n")
    (root / "sub" / "deep" / "f.bin").write_bytes(os.urandom(70_000))
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "sub" / "deep" / "f.bin", 0o600)
    os.symlink("a.txt", root / "link")
    os.symlink("sub/deep", root / "folder link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.symlink("../../a.txt", root / "sub" / "deep" / "up")
    os.link(root / "sub" / "deep" / "f.bin", root / "hard")
    os.link(root / "a.txt", root / "sub" / "a again")
    os.setxattr(root / "a.txt", "user.colour", b"blue")
    os.setxattr(root / "empty", "user.kind", b"folder")
    os.setxattr(root / "run.sh", "user.binary", b"\xff\x00\x01")
    (root / "tagged-empty").write_bytes(b"")
    os.setxattr(root / "tagged-empty", "user.tag", b"1")
    os.mkfifo(root / "pipe")
    os.utime(root / "link", ns=(1_000_000_000, 978_307_200_000_000_000), follow_symlinks=False)
    os.utime(root / "a.txt", ns=(1_100_000_000_000_000_000, 1_200_000_000_000_000_000))
    return root


def compare(source: Path, copy: Path) -> None:
    """rsync's own comparison (content checksums, times, modes, links, hard links, xattrs) finds
    nothing to do; the store's own `user.assetfs.*` attributes of each copied file (its object
    id, hash…: docs/fuse.md) are the one difference, left out."""
    assert run("rsync", "-acniHX", "--filter=-x user.assetfs.*", f"{source}/", f"{copy}/") == ""


# symlinks -----------------------------------------------------------------------------------


def test_symlinks_are_made_read_listed_changed_renamed_and_removed(mounted: Mount, tmp_path: Path) -> None:
    folder = mounted.path / "docs" / "sub"  # a bucket's top folder lists its objects' id folders too
    folder.mkdir(parents=True)
    (folder / "target.txt").write_text("the target\n")
    os.symlink("target.txt", folder / "link")
    os.symlink("/elsewhere/nothing", folder / "dangling")

    assert os.readlink(folder / "link") == "target.txt"
    assert (folder / "link").read_text() == "the target\n"  # the kernel resolves it
    status = os.lstat(folder / "link")
    assert stat.S_ISLNK(status.st_mode) and status.st_size == len("target.txt") and status.st_nlink == 1
    assert not (folder / "dangling").exists() and (folder / "dangling").is_symlink()
    assert sorted(os.listdir(folder)) == ["dangling", "link", "target.txt"]
    with os.scandir(folder) as entries:
        assert {entry.name for entry in entries if entry.is_symlink()} == {"dangling", "link"}

    os.chown(folder / "link", 1234, 5678, follow_symlinks=False)  # lchown
    os.utime(folder / "link", ns=(1_000_000_000, 2_000_000_000), follow_symlinks=False)
    status = os.lstat(folder / "link")
    assert (status.st_uid, status.st_gid) == (1234, 5678)
    assert (status.st_atime_ns, status.st_mtime_ns) == (1_000_000_000, 2_000_000_000)
    target = os.stat(folder / "target.txt")
    assert target.st_uid == os.getuid() and target.st_mtime_ns != 2_000_000_000  # the target is untouched

    os.link(folder / "link", folder / "second name", follow_symlinks=False)  # a hard link to the symlink
    assert os.lstat(folder / "link").st_nlink == 2
    os.rename(folder / "link", folder / "renamed")
    assert os.readlink(folder / "renamed") == "target.txt"
    os.rename(folder / "dangling", folder / "renamed")  # replaces it
    assert os.readlink(folder / "renamed") == "/elsewhere/nothing"
    assert os.readlink(folder / "second name") == "target.txt"
    os.unlink(folder / "second name")
    assert sorted(os.listdir(folder)) == ["renamed", "target.txt"]
    expect_errno({errno.EINVAL}, lambda: os.readlink(folder / "target.txt"))
    expect_errno({errno.EEXIST}, lambda: os.symlink("x", folder / "renamed"))
    expect_errno({errno.ENAMETOOLONG}, lambda: os.symlink("x" * 4096, folder / "long"))
    expect_errno({errno.EILSEQ}, lambda: os.symlink(b"\xff\xfe", os.fsencode(folder / "latin")))

    # what the CLI says of a symlink: no object, nothing listed
    mounted.settle()
    result = run_cli(mounted.store_root, "stat", "docs/sub/renamed", check=1)
    assert result.stderr.decode().strip() == \
        "assetfs: docs/sub/renamed is a symbolic link to '/elsewhere/nothing', not an object"
    listed = run_cli(mounted.store_root, "ls", "docs/").stdout.decode()
    assert "sub/target.txt" in listed and "renamed" not in listed
    (tmp_path / "x").write_bytes(b"x")
    result = run_cli(mounted.store_root, "put", "docs", str(tmp_path / "x"), "--name", "sub/renamed/inside", check=2)
    assert b"is a symbolic link, not a folder" in result.stderr


def test_symlinks_and_special_files_outlive_the_mount(store_root: Path, tmp_path: Path) -> None:
    mount = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount.log")
    try:
        (mount.path / "b").mkdir()
        os.symlink("über/ziel", mount.path / "b" / "link")
        os.mkfifo(mount.path / "b" / "fifo", 0o640)
        os.utime(mount.path / "b" / "link", ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
        ino = os.lstat(mount.path / "b" / "link").st_ino
    finally:
        assert stop_mount(mount) == 0
    run_cli(store_root, "gc")  # nothing to collect in them: they hold no object
    again = start_mount(store_root, tmp_path / "mnt", tmp_path / "mount2.log")
    try:
        status = os.lstat(again.path / "b" / "link")
        assert os.readlink(again.path / "b" / "link") == "über/ziel"
        assert (status.st_ino, status.st_atime_ns, status.st_mtime_ns) == (ino, 5_000_000_000, 6_000_000_000)
        fifo = os.lstat(again.path / "b" / "fifo")
        assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o640 & ~0o022
    finally:
        assert stop_mount(again) == 0
    assert run_cli(store_root, "fsck").returncode == 0


def test_a_symlink_another_mount_replaced_or_removed_is_seen_within_the_entry_timeout(store_root: Path,
                                                                                      tmp_path: Path) -> None:
    a = start_mount(store_root, tmp_path / "a", tmp_path / "a.log")
    try:
        b = start_mount(store_root, tmp_path / "b", tmp_path / "b.log")
        try:
            (a.path / "b" / "d").mkdir(parents=True)
            (a.path / "b" / "d" / "one").write_text("one\n")
            (a.path / "b" / "d" / "two").write_text("two\n")
            os.symlink("one", a.path / "b" / "d" / "link")
            assert (a.path / "b" / "d" / "link").read_text() == "one\n"  # A's kernel knows the link now
            time.sleep(ATTR_TIMEOUT_S + 0.1)
            assert os.readlink(b.path / "b" / "d" / "link") == "one"
            os.symlink("two", b.path / "b" / "d" / "new link")
            os.rename(b.path / "b" / "d" / "new link", b.path / "b" / "d" / "link")  # ln -sfn
            time.sleep(ATTR_TIMEOUT_S + 0.1)
            assert os.readlink(a.path / "b" / "d" / "link") == "two"
            assert (a.path / "b" / "d" / "link").read_text() == "two\n"
            os.unlink(b.path / "b" / "d" / "link")
            time.sleep(ATTR_TIMEOUT_S + 0.1)
            assert not os.path.lexists(a.path / "b" / "d" / "link")
        finally:
            assert stop_mount(b) == 0
    finally:
        assert stop_mount(a) == 0
    assert "Traceback" not in a.log_text() + b.log_text()
    assert run_cli(store_root, "fsck").returncode == 0


# special files ----------------------------------------------------------------------------------


def test_mknod_makes_regular_files_fifos_sockets_and_devices(mounted: Mount) -> None:
    folder = mounted.path / "nodes" / "n"
    folder.mkdir(parents=True)
    os.mknod(folder / "regular", 0o640 | stat.S_IFREG)  # GNU tar --xattrs makes files this way
    status = os.stat(folder / "regular")
    assert stat.S_ISREG(status.st_mode) and status.st_size == 0 and stat.S_IMODE(status.st_mode) == 0o640 & ~0o022
    with open(folder / "regular", "ab") as writer:
        writer.write(b"written after mknod")
    assert (folder / "regular").read_bytes() == b"written after mknod"

    os.mkfifo(folder / "fifo")
    assert stat.S_ISFIFO(os.lstat(folder / "fifo").st_mode)
    reader = os.open(folder / "fifo", os.O_RDONLY | os.O_NONBLOCK)  # the kernel is the pipe
    try:
        writer_fd = os.open(folder / "fifo", os.O_WRONLY | os.O_NONBLOCK)
        os.write(writer_fd, b"through the pipe")
        os.close(writer_fd)
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(folder / "socket"))  # mknod(S_IFSOCK)
        assert stat.S_ISSOCK(os.lstat(folder / "socket").st_mode)
    finally:
        server.close()

    os.mknod(folder / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(folder / "disk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    char, block = os.lstat(folder / "null"), os.lstat(folder / "disk")
    assert stat.S_ISCHR(char.st_mode) and (os.major(char.st_rdev), os.minor(char.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(block.st_mode) and (os.major(block.st_rdev), os.minor(block.st_rdev)) == (7, 0)
    expect_errno({errno.EACCES}, lambda: os.open(folder / "null", os.O_RDONLY))  # the mount is nodev

    os.link(folder / "fifo", folder / "fifo too")
    assert os.lstat(folder / "fifo").st_nlink == 2
    os.rename(folder / "null", folder / "renamed null")
    for name in ("fifo", "fifo too", "socket", "renamed null", "disk"):
        os.unlink(folder / name)
    assert os.listdir(folder) == ["regular"]

    mounted.settle()
    [line] = run_cli(mounted.store_root, "ls", "nodes/").stdout.decode().splitlines()
    assert line.split()[1] == "19" and line.endswith("nodes/n/regular")  # the mknod'd file's object


# times and link counts ------------------------------------------------------------------------


def test_atime_is_kept_apart_from_mtime_and_set_by_utimensat(mounted: Mount) -> None:
    path = mounted.path / "times" / "file"
    path.parent.mkdir()
    path.write_bytes(b"some content")
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    assert (os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns) == (1_000_000_000, 2_000_000_000)
    path.read_bytes()  # reading does not change it (docs/fuse.md, "Times")
    os.utime(path, ns=(3_000_000_000, os.stat(path).st_mtime_ns))  # touch -a
    mounted.settle()
    time.sleep(ATTR_TIMEOUT_S + 0.1)  # read again from the catalog
    assert (os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns) == (3_000_000_000, 2_000_000_000)


def test_open_with_o_trunc_changes_ctime_and_mtime_at_once(mounted: Mount) -> None:
    path = mounted.path / "times" / "file"
    path.parent.mkdir()
    path.write_bytes(b"some content")
    mounted.settle()
    before = os.stat(path)
    time.sleep(0.05)
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        during = os.fstat(fd)
    finally:
        os.close(fd)
    assert during.st_size == 0
    assert during.st_ctime_ns > before.st_ctime_ns and during.st_mtime_ns > before.st_mtime_ns
    mounted.settle()
    time.sleep(ATTR_TIMEOUT_S + 0.1)
    assert os.stat(path).st_ctime_ns == during.st_ctime_ns  # and the commit keeps them


def test_the_commit_after_a_close_with_nothing_written_moves_no_time(mounted: Mount) -> None:
    (mounted.path / "times").mkdir()
    fd = os.open(mounted.path / "times" / "new", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    created = os.stat(mounted.path / "times" / "new")
    mounted.settle()  # its (empty) content is committed about 100 ms after the close
    time.sleep(ATTR_TIMEOUT_S + 0.1)  # past the attribute timeout: read again from the catalog
    committed = os.stat(mounted.path / "times" / "new")
    assert (committed.st_ctime_ns, committed.st_mtime_ns) == (created.st_ctime_ns, created.st_mtime_ns)


def test_a_folder_has_two_links_and_one_per_subfolder(mounted: Mount) -> None:
    folder = mounted.path / "times" / "t"
    folder.mkdir(parents=True)
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    (folder / "file").write_bytes(b"")
    assert os.stat(folder).st_nlink == 4
    os.symlink("a", folder / "link to a")
    assert os.stat(folder).st_nlink == 4  # a symlink to a folder is no subfolder
    assert os.stat(folder / "a").st_nlink == 2
    os.rmdir(folder / "b")
    assert os.stat(folder).st_nlink == 3
    os.rename(folder / "a", folder.parent / "a")
    assert os.stat(folder).st_nlink == 2
    assert os.stat(mounted.path / "times").st_nlink == 4  # a bucket's top folder: 2 + t and a


def test_an_open_file_whose_last_name_is_gone_has_no_links(mounted: Mount) -> None:
    folder = mounted.path / "times"
    folder.mkdir()
    fd = os.open(folder / "open", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"still here")
        os.link(folder / "open", folder / "other name")
        os.unlink(folder / "open")
        assert os.fstat(fd).st_nlink == 1
        os.unlink(folder / "other name")
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"still here"
    finally:
        os.close(fd)


# tools ----------------------------------------------------------------------------------------


def _git(*args: str | Path, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": "/nonexistent"}
    result = subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, f"git {args} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_git_clone_into_the_mount_is_clean(mounted: Mount, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    tree = make_tree(repo / "tree")
    os.unlink(tree / "pipe")  # git keeps no FIFOs
    for index in range(30):
        (repo / "src" / f"m{index % 4}").mkdir(parents=True, exist_ok=True)
        (repo / "src" / f"m{index % 4}" / f"file{index}.py").write_text(f"print({index})\n" * (index + 1))
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "first", cwd=repo)
    (repo / "src" / "m0" / "file0.py").write_text("changed\n")
    os.symlink("src/m1", repo / "shortcut")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "second", cwd=repo)

    (mounted.path / "code").mkdir()
    clone = mounted.path / "code" / "clone"
    _git("clone", "-q", repo, clone, cwd=tmp_path)
    assert os.readlink(clone / "shortcut") == "src/m1"
    assert os.readlink(clone / "tree" / "link") == "a.txt"
    assert os.access(clone / "tree" / "run.sh", os.X_OK)
    assert _git("fsck", "--full", "--strict", cwd=clone) == ""
    assert _git("status", "--porcelain", "--ignored", cwd=clone) == ""
    time.sleep(ATTR_TIMEOUT_S + 0.1)  # after the commits of the checkout landed: still clean
    assert _git("status", "--porcelain", cwd=clone) == ""
    assert _git("diff", "--stat", "HEAD", cwd=clone) == ""


@pytest.mark.parametrize("tool", ["cp -a", "rsync -aHAX", "tar --xattrs -x"])
def test_copies_of_a_tree_with_symlinks_hard_links_and_xattrs_are_exact(mounted: Mount, tmp_path: Path,
                                                                       tool: str) -> None:
    source = make_tree(tmp_path / "source")
    copy = mounted.path / "copies" / "tree"
    copy.parent.mkdir()
    if tool == "cp -a":
        run("cp", "-a", source, copy)
    elif tool == "rsync -aHAX":
        run("rsync", "-aHAX", f"{source}/", f"{copy}/")
    else:
        archive = tmp_path / "tree.tar"
        run("tar", "--xattrs", "--xattrs-include=user.*", "-cf", archive, "-C", source, ".")
        copy.mkdir()
        run("tar", "--xattrs", "--xattrs-include=user.*", "-xf", archive, "-C", copy)
    compare(source, copy)
    assert os.getxattr(copy / "tagged-empty", "user.tag") == b"1"
    assert os.stat(copy / "hard").st_ino == os.stat(copy / "sub" / "deep" / "f.bin").st_ino
    time.sleep(ATTR_TIMEOUT_S + 0.1)  # once the closed files are committed, the copy is as exact
    mounted.settle()
    compare(source, copy)
