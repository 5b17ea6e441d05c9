"""Two servers, one store folder on CephFS, one PostgreSQL catalog (issue 11, findings 21-22).

A one-node Ceph (mon, memstore OSD, MDS) with two ceph-fuse clients stands in for two
machines: client A's and client B's views of the same folder. The cluster comes from the
scripts in $CEPHFS_TOOLS (default /work/shared/tools/cephfs; `scripts/test --long` installs
the Debian packages they need). Long: run by `scripts/test --long`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

from cas.store import Store
from conftest import run_cli
from mounting import check_after_unmount, start_mount, stop_mount

pytestmark = pytest.mark.long

TOOLS = Path(os.environ.get("CEPHFS_TOOLS", "/work/shared/tools/cephfs"))
BINARIES = ("ceph-mon", "ceph-osd", "ceph-mds", "ceph-fuse", "ceph-authtool", "monmaptool")
FILES = 200


@dataclass(frozen=True)
class CephFS:
    a: Path  # the filesystem as client A (server A) sees it
    b: Path  # ... and as client B sees it


@pytest.fixture(scope="session")
def cephfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CephFS]:
    """A one-node CephFS mounted twice; always torn down (cephfs-down.sh stops by pid file)."""
    if not (TOOLS / "cephfs-up.sh").is_file():
        pytest.skip(f"no CephFS scripts at {TOOLS} (set CEPHFS_TOOLS)")
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        pytest.skip(f"Ceph is not installed ({', '.join(missing)} missing); scripts/test --long installs it")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("Ceph cannot run here: no /dev/fuse for ceph-fuse")
    folder = tmp_path_factory.mktemp("cephfs")
    up = subprocess.run(["bash", str(TOOLS / "cephfs-up.sh"), str(folder)], capture_output=True, text=True,
                        timeout=300, env={**os.environ, "MDS_TICK": "1"})
    try:
        if up.returncode != 0:
            tail = "\n".join((up.stdout + up.stderr).strip().splitlines()[-5:])
            pytest.skip(f"Ceph cannot run here (cephfs-up.sh exited {up.returncode}):\n{tail}")
        yield CephFS(folder / "mnt" / "a", folder / "mnt" / "b")
    finally:
        subprocess.run(["bash", str(TOOLS / "cephfs-down.sh"), str(folder)], capture_output=True, timeout=300)


def _hash(path: Path) -> str:
    return blake3.blake3(path.read_bytes()).hexdigest()


def _visible(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not show on the other client"
        time.sleep(0.05)


HOLDER = """
import sys
with open(sys.argv[1], "wb") as file:
    file.write(b"begun before B started")
    file.flush()
    print("open", flush=True)
    sys.stdin.readline()
    file.write(b", ended after B's fsck --repair")
"""


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_servers_share_a_store_on_cephfs(cephfs: CephFS, database_url: str, tmp_path: Path) -> None:
    """Mounts on A and B of one store: B starting, stopping and `fsck --repair` on B while A
    copies 200 files in lose nothing of A's; every file is committed; fsck is clean."""
    name = f"store-{os.getpid()}-{time.monotonic_ns()}"
    root_a, root_b = cephfs.a / name, cephfs.b / name
    store, _ = Store.init(root_a, database_url=database_url)
    try:
        assert store.tree.use_syncfs is False, "syncfs = auto must not trust ceph-fuse's syncfs"
    finally:
        store.close()
    _visible(root_b / "assetfs.toml")

    source = tmp_path / "source"
    source.mkdir()
    for index in range(FILES):
        (source / f"f{index:03d}.bin").write_bytes(os.urandom(1000 + index * 37))
    expected = {path.name: _hash(path) for path in source.iterdir()}

    # A holds closed files in its journal (until fsync) so B meets a full journal of a live mount
    # (and stages in named files, as where ceph-fuse refuses O_TMPFILE: not every kernel does)
    a = start_mount(root_a, tmp_path / "mnt-a", tmp_path / "a.log",
                    env={"ASSETFS_WRITEBEHIND_GATHER_S": "3600", "ASSETFS_FAIL": "tmpfile"})
    copying: subprocess.Popen | None = None
    writer: subprocess.Popen | None = None
    try:
        (a.path / "photos").mkdir()
        half = sorted(source.iterdir())[:FILES // 2]
        subprocess.run(["cp", *map(str, half), str(a.path / "photos")], check=True, timeout=300)
        journal_a = next((root_a / "tmp").glob("closed-*"))
        assert len(list(journal_a.iterdir())) >= FILES // 2
        copying = subprocess.Popen(["cp", "-r", f"{source}/.", str(a.path / "photos")], stderr=subprocess.PIPE)
        # the file is held open by a process of its own: every process this test starts would
        # otherwise close its inherited copy of the descriptor at exec, a close() of the file
        writer = subprocess.Popen([sys.executable, "-c", HOLDER, str(a.path / "photos" / "open-on-a.txt")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"open\n"
        journal_seen_by_b = root_b / "tmp" / journal_a.name
        staged_on_a = {entry.name for entry in journal_seen_by_b.iterdir()
                       if entry.name.startswith("stage-") and entry.stat().st_size == len(b"begun before B started")}
        assert len(staged_on_a) == 1, "A stages the open file in a named file in its journal folder"

        b = start_mount(root_b, tmp_path / "mnt-b", tmp_path / "b.log")
        try:
            (b.path / "photos").mkdir(exist_ok=True)
            (b.path / "photos" / "from-b.txt").write_bytes(b"written on server B")
            b.settle()
        finally:
            code_b = stop_mount(b)
        assert code_b == 0 and " ERROR " not in b.log_text(), b.log_text()
        fsck_b = run_cli(root_b, "fsck", "--repair", "--orphan-grace", "0s", check=None)
        assert fsck_b.returncode == 0, fsck_b.stdout.decode() + fsck_b.stderr.decode()
        assert journal_a.is_dir(), "B removed the journal of the mount that runs on A"
        assert all((journal_seen_by_b / name).exists() for name in staged_on_a), "B removed A's staging files"
        writer.communicate(b"go\n", timeout=60)
        assert writer.returncode == 0
        expected["open-on-a.txt"] = blake3.blake3(b"begun before B started, ended after B's fsck --repair").hexdigest()

        _, errors = copying.communicate(timeout=600)
        assert copying.returncode == 0, f"cp into mount A failed: {errors.decode()}"
        copying = None
        a.settle()
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        if copying is not None:
            copying.kill()
            copying.wait()
        code_a = stop_mount(a)
    check_after_unmount(a, code_a)

    with Store.open(root_b) as store:
        named = {name: info.hash for info in store.list("photos") for name in info.names}
    assert named == {**expected, "from-b.txt": blake3.blake3(b"written on server B").hexdigest()}
    for root in (root_a, root_b):
        fsck = run_cli(root, "fsck", "--verify-content", check=None)
        assert fsck.returncode == 0, fsck.stdout.decode() + fsck.stderr.decode()
    assert list((root_b / "tmp").iterdir()) == []
