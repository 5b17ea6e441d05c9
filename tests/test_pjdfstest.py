"""pjdfstest, the POSIX filesystem test suite, in full on the named tree of a real mount
(issue 9, point 4). Long: run by `scripts/test --long`, which installs the build tools
(the check of the table itself runs always).

The suite's unchanged source is taken from $PJDFSTEST_SRC (default: ../shared/tools/pjdfstest
beside the repository), copied into this test's temporary folder and built there. It runs as
root in a bucket folder of a mount made with --allow-other (its tests act as other users), at
a mountpoint every user can reach. The test files allowed to fail, each with its reason, are
the table in docs/fuse.md ("pjdfstest"): any other file failing fails this test; a listed file
that passes is reported, so the list only ever shrinks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import mounting
from mounting import Mount

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(os.environ.get("PJDFSTEST_SRC", ROOT.parent / "shared" / "tools" / "pjdfstest"))
FUSE_DOC = ROOT / "docs" / "fuse.md"
TOOLS = ("autoreconf", "automake", "cc", "make", "prove")
BUILD_TIMEOUT = 600  # s
SUITE_TIMEOUT = 3600  # s: the full suite takes about 10 minutes on 2 busy cores

# The allowed-failures table in docs/fuse.md's pjdfstest section: its header, then rows such as
# | `chmod/12.t` | reason |
TABLE_HEADER = "| test file | why it may fail |"
ALLOWED_ROW = re.compile(r"^\|\s*`(?P<file>[a-z_]+/\d+\.t)`\s*\|\s*(?P<reason>[^|]*\S)\s*\|\s*$")
SECTION = "\n## pjdfstest\n"


def allowed_failures(doc: Path = FUSE_DOC) -> dict[str, str]:
    """The test files allowed to fail, from the table in docs/fuse.md's pjdfstest section:
    file → reason. A missing section or table is an error, not an empty list."""
    text = doc.read_text()
    start = text.find(SECTION)
    if start == -1:
        raise ValueError(f"{doc} has no '## pjdfstest' section")
    end = text.find("\n## ", start + len(SECTION))
    lines = text[start:end if end != -1 else None].splitlines()
    if TABLE_HEADER not in lines:
        raise ValueError(f"{doc}'s pjdfstest section has no table headed {TABLE_HEADER!r}")
    rows = {}
    for line in lines[lines.index(TABLE_HEADER) + 2:]:
        if not line.startswith("|"):
            break
        match = ALLOWED_ROW.match(line)
        if match is None:
            raise ValueError(f"{doc}: a pjdfstest table row is not '| `dir/NN.t` | reason |': {line!r}")
        rows[match["file"]] = match["reason"]
    return rows


def failed_files(prove_output: str, tests: Path) -> set[str]:
    """The test files prove's "Test Summary Report" names (failed tests, a bad plan, a crash),
    relative to the suite's tests folder."""
    _, _, report = prove_output.partition("Test Summary Report")
    return {Path(match).relative_to(tests).as_posix()
            for match in re.findall(r"^(\S+\.t)\s+\(Wstat:", report, re.MULTILINE)}


@pytest.fixture
def pjdfstest(tmp_path: Path) -> Path:
    """The suite built from its unchanged source in this test's temporary folder: its tests/."""
    if not (SOURCE / "pjdfstest.c").is_file():
        pytest.skip(f"no pjdfstest source at {SOURCE} (set PJDFSTEST_SRC to a pjdfstest checkout)")
    if os.geteuid() != 0:
        pytest.skip("pjdfstest must run as root (its tests switch users)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cannot build pjdfstest: {', '.join(missing)} missing; scripts/test --long installs them")
    build = tmp_path / "pjdfstest"
    shutil.copytree(SOURCE, build)
    for command in (["autoreconf", "-ifs"], ["./configure"], ["make", "pjdfstest"]):
        done = subprocess.run(command, cwd=build, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        assert done.returncode == 0, f"building pjdfstest: {' '.join(command)} failed:\n{done.stdout}{done.stderr}"
    return build / "tests"


@pytest.fixture
def shared_mount(store_root: Path, tmp_path: Path) -> Iterator[Mount]:
    """An --allow-other mount at a mountpoint every user can reach (tmp_path is private to root)."""
    with mounting.shared_mount(store_root, tmp_path / "mount.log", "assetfs-pjdfstest-") as mount:
        yield mount


def failures_of(prove_output: str, tests: Path) -> dict[str, list[str]]:
    """What each test file printed besides passes and its plan, from prove's verbose output
    (`prove -v`: each file's section starts with its path and a row of dots): its `not ok`
    lines and messages; by file, relative to the tests folder."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in prove_output.partition("Test Summary Report")[0].splitlines():
        header = re.match(r"^(\S+\.t) \.+", line)
        if header:
            current = found.setdefault(Path(header[1]).relative_to(tests).as_posix(), [])
        elif line.strip() and not re.match(r"^(ok \d+|1\.\.\d+$)", line):
            current.append(line)
    return found


def run_prove(tests: Path, cwd: Path) -> str:
    """`prove -rv` of the whole suite in `cwd`; its output. The suite is killed (its process
    group) if it runs past SUITE_TIMEOUT."""
    process = subprocess.Popen(["prove", "-rv", str(tests)], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"pjdfstest did not finish in {SUITE_TIMEOUT} s:\n{output[-3000:]}")
    return output


def test_allowed_failures_table_is_read_from_docs(tmp_path: Path) -> None:
    """docs/fuse.md's table parses, and a broken one is an error rather than an empty list."""
    assert all(allowed_failures().values())
    doc = tmp_path / "fuse.md"
    doc.write_text(f"# x\n\n## pjdfstest\n\ntext\n\n{TABLE_HEADER}\n|---|---|\n"
                   "| `chmod/12.t` | a reason |\n| `link/00.t` | another |\n\nafter\n\n## Next\n")
    assert allowed_failures(doc) == {"chmod/12.t": "a reason", "link/00.t": "another"}
    doc.write_text(f"## pjdfstest\n\n{TABLE_HEADER}\n|---|---|\n| chmod/12.t without quotes | reason |\n")
    with pytest.raises(ValueError):
        allowed_failures(doc)
    doc.write_text("## pjdfstest\n\nno table\n")
    with pytest.raises(ValueError):
        allowed_failures(doc)


def test_failed_files_are_read_from_the_prove_summary() -> None:
    output = ("/b/tests/chmod/00.t ...... ok\n/b/tests/link/00.t ...... \nnot ok 3\nFailed 1/202 subtests\n"
              "Test Summary Report\n-------------------\n"
              "/b/tests/link/00.t        (Wstat: 0 Tests: 202 Failed: 1)\n  Failed test:  3\n"
              "/b/tests/utimensat/09.t   (Wstat: 256 (exited 1) Tests: 1 Failed: 0)\n"
              "  Non-zero exit status: 1\n  Parse errors: Bad plan.  You planned 7 tests but ran 1.\n"
              "Files=3, Tests=210\nResult: FAIL\n")
    assert failed_files(output, Path("/b/tests")) == {"link/00.t", "utimensat/09.t"}
    assert failures_of(output, Path("/b/tests")) == {"chmod/00.t": [],
                                                     "link/00.t": ["not ok 3", "Failed 1/202 subtests"]}


@pytest.mark.long
@pytest.mark.timeout(SUITE_TIMEOUT + BUILD_TIMEOUT + 300)
def test_pjdfstest_full_suite_on_the_named_tree(pjdfstest: Path, shared_mount: Mount, tmp_path: Path) -> None:
    bucket = shared_mount.path / "pjdfstest"
    bucket.mkdir()
    output = run_prove(pjdfstest, bucket)
    log = tmp_path / "prove.log"
    log.write_text(output)
    assert "Result:" in output, f"prove gave no result:\n{output[-3000:]}"
    ran = re.search(r"^Files=(\d+),", output, re.MULTILINE)
    files = len(list(pjdfstest.rglob("*.t")))
    assert ran and int(ran[1]) == files, (  # a "Bail out!" stops prove: the files after it never ran
        f"prove ran {ran[1] if ran else 'no'} of the suite's {files} test files:\n{output[-3000:]}")
    failed = failed_files(output, pjdfstest)
    allowed = allowed_failures()
    now_passing = sorted(set(allowed) - failed)
    if now_passing:
        warnings.warn(f"pjdfstest files listed as allowed to fail now pass; remove them from docs/fuse.md: "
                      f"{', '.join(now_passing)}")
    unexpected = sorted(failed - set(allowed))
    failures = failures_of(output, pjdfstest)
    details = "\n".join(f"{name}:\n  " + "\n  ".join(failures.get(name, [])[:5] or ["(no `not ok` line)"])
                        for name in unexpected[:20])
    assert not unexpected, (f"pjdfstest files failed that docs/fuse.md does not allow: {', '.join(unexpected)}\n"
                            f"{details}\n(prove's whole output: {log})")
