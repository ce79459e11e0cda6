"""The examples, the guide's code and the README, run as a user runs them.

The example tests start the scripts as subprocesses on small trees in
``tmp_path``, in real time, each bounded by a timeout. They run with
``LC_ALL=C``, so the expected order of paths is byte order.
"""

from __future__ import annotations

import hashlib
import mailbox
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import trio

import pulse_trio
from pulse_trio import Job, JobStatus, Pulse

ROOT = Path(__file__).resolve().parent.parent
HASH_TREE = ROOT / "examples" / "hash_tree.py"
QUICKSTART = ROOT / "examples" / "quickstart.py"
GUIDE = ROOT / "docs" / "guide.md"
API_REFERENCE = ROOT / "docs" / "api.md"
README = ROOT / "README.md"

RUN_TIMEOUT = 60.0
"""Real seconds one run of an example may take before the test fails."""

POLL_INTERVAL = 0.01
"""Real seconds between two reads of a database or file that a run writes."""

KILL_TREE_FILES = 3000
"""Files in the tree of the test that kills a run."""

KILL_AFTER_DIGESTS = 200
"""Digests stored by the first run of that test before it is killed."""


# -- helpers -------------------------------------------------------------


def example_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C"}


def run_hash_tree(
    *args: str | Path, cwd: Path, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(HASH_TREE), *map(str, args)],
        cwd=cwd,
        env=example_env(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def sha256sum_line(data: bytes, name: bytes) -> bytes:
    """Return the line GNU coreutils 9.1 ``sha256sum`` prints for a file."""
    digest = hashlib.sha256(data).hexdigest().encode()
    if any(char in name for char in b"\\\n\r"):
        name = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        name = name.replace(b"\r", b"\\r")
        return b"\\" + digest + b"  " + name + b"\n"
    return digest + b"  " + name + b"\n"


def regular_files(top: str, cwd: Path) -> list[bytes]:
    """List the regular files under *top* as ``find top -type f`` spells them."""
    found = []
    for folder, _, names in os.walk(cwd / top):
        for name in names:
            path = os.path.join(folder, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                display_path = os.path.join(top, os.path.relpath(path, cwd / top))
                found.append(os.fsencode(display_path))
    return sorted(found)


def expected_output(top: str, cwd: Path) -> bytes:
    """Return the sha256sum lines of every regular file under *top*."""
    return b"".join(
        sha256sum_line((cwd / os.fsdecode(name)).read_bytes(), name)
        for name in regular_files(top, cwd)
    )


def make_tree(tree: Path) -> None:
    """Fill *tree* with files whose names and types test the output format."""
    (tree / "sub" / "deeper").mkdir(parents=True)
    contents = {
        "a.txt": b"alpha\n",
        "B.txt": b"upper case sorts first in byte order\n",
        "empty": b"",
        "sp ace.txt": b"a blank in the name\n",
        "new\nline": b"a newline in the name\n",
        "cr\rreturn": b"a carriage return in the name\n",
        "ünïcode.txt": b"a name that is not ASCII\n",
        os.fsdecode(b"latin-\xe9.txt"): b"a name that is not UTF-8\n",
        "sub/back\\slash": b"a backslash in the name\n",
        "sub/deeper/large.bin": bytes(range(256)) * 8192,
    }
    for name, data in contents.items():
        (tree / name).write_bytes(data)
    (tree / "link-to-a").symlink_to("a.txt")
    (tree / "sub" / "link-to-folder").symlink_to("deeper")
    os.mkfifo(tree / "fifo")


def read_job_ids(database: Path) -> dict[bytes, str]:
    """Return the job id that hash_tree recorded for each absolute path."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT path, job_id FROM hash_tree_files").fetchall()
    return dict(rows)


def read_digests(database: Path) -> dict[str, str]:
    with sqlite3.connect(database, timeout=5) as conn:
        rows = conn.execute("SELECT job_id, sha256 FROM hash_tree_digests").fetchall()
    return dict(rows)


def read_jobs(database: Path, job_ids: Iterable[str]) -> dict[str, Job]:
    """Read the jobs through the public API, as an operator would."""

    async def read() -> dict[str, Job]:
        pulse = await Pulse.new(database)
        try:
            return {job_id: await pulse.status(job_id) for job_id in job_ids}
        finally:
            pulse.close()

    return trio.run(read)


def count_digests(database: Path) -> int:
    """Return how many digests a running hash_tree has stored, 0 if none yet."""
    try:
        with sqlite3.connect(database, timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM hash_tree_digests").fetchone()
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0
    count: int = row[0]
    return count


def wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until the file at *path* contains *text*, or fail after a deadline."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"the run exited with {process.returncode} before {text!r}")
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} did not appear in {path} in {RUN_TIMEOUT} s")
        time.sleep(POLL_INTERVAL)


# -- hash_tree -----------------------------------------------------------


@pytest.mark.processes
def test_hash_tree_matches_hashlib(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")

    result = run_hash_tree(tmp_path / "tree", "--db", tmp_path / "h.db", cwd=tmp_path)

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == expected_output(str(tmp_path / "tree"), tmp_path)
    assert b"found 10 files" in result.stderr


@pytest.mark.processes
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "find", "sort", "sha256sum")),
    reason="needs bash, find, sort and sha256sum",
)
def test_hash_tree_matches_sha256sum_command(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    pipeline = "find ./tree/ -type f -print0 | sort -z | xargs -0 sha256sum"
    reference = subprocess.run(
        ["bash", "-c", pipeline],
        cwd=tmp_path,
        env=example_env(),
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )

    result = run_hash_tree("./tree/", "--db", "h.db", cwd=tmp_path)

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == reference.stdout


@pytest.mark.processes
def test_hash_tree_second_run_redoes_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path / "tree")
    database = tmp_path / "h.db"
    first = run_hash_tree("tree", "--db", database, cwd=tmp_path)
    job_ids = read_job_ids(database)
    digests = read_digests(database)

    second = run_hash_tree("tree", "--db", database, cwd=tmp_path)

    assert first.returncode == 0, first.stderr.decode()
    assert second.returncode == 0, second.stderr.decode()
    assert second.stdout == first.stdout
    assert b"10 hashed before, 0 resumed, 0 retried, 0 enqueued" in second.stderr
    assert read_job_ids(database) == job_ids
    assert read_digests(database) == digests
    jobs = read_jobs(database, job_ids.values())
    assert {job.status for job in jobs.values()} == {JobStatus.COMPLETED}
    assert {job.attempts for job in jobs.values()} == {1}


@pytest.mark.processes
def test_hash_tree_resumes_after_kill(tmp_path: Path) -> None:
    tree = tmp_path / "many"
    for index in range(KILL_TREE_FILES):
        folder = tree / f"{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file-{index}").write_text(f"file number {index}\n")
    database = tmp_path / "h.db"
    stderr = tmp_path / "killed.err"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, HASH_TREE, "many", "--db", database, "--workers", "2"],
            cwd=tmp_path,
            env=example_env(),
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            while count_digests(database) < KILL_AFTER_DIGESTS:
                assert process.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, "too few files hashed in time"
                time.sleep(POLL_INTERVAL)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=RUN_TIMEOUT)
    hashed_before = read_digests(database)
    assert len(hashed_before) < KILL_TREE_FILES, "finished before the kill"
    job_ids = read_job_ids(database)
    completed_before = {
        job.id: job
        for job in read_jobs(database, job_ids.values()).values()
        if job.status is JobStatus.COMPLETED
    }

    rerun = run_hash_tree("many", "--db", database, "--workers", "2", cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stderr.decode()
    assert rerun.stdout == expected_output("many", tmp_path)
    summary = f"{len(hashed_before)} hashed before, " + (
        f"{KILL_TREE_FILES - len(hashed_before)} resumed, 0 retried, 0 enqueued"
    )
    assert summary.encode() in rerun.stderr
    assert read_job_ids(database) == job_ids
    digests = read_digests(database)
    assert {job_id: digests[job_id] for job_id in hashed_before} == hashed_before
    jobs = read_jobs(database, job_ids.values())
    assert {job.status for job in jobs.values()} == {JobStatus.COMPLETED}
    for job_id, before in completed_before.items():
        assert jobs[job_id] == before, "a job completed before the kill ran again"


@pytest.mark.processes
def test_hash_tree_reports_vanished_file(tmp_path: Path) -> None:
    """A file deleted between the listing and its job ends as a dead job.

    This works as root too, where chmod cannot make a file unreadable. The
    test holds the database's write lock, so the run lists the files and
    then waits, while the test deletes one of them.
    """
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "kept.txt").write_bytes(b"kept\n")
    vanishing = tree / "gone.txt"
    vanishing.write_bytes(b"vanishing\n")
    listed = vanishing.stat()
    database = tmp_path / "h.db"
    stdout, stderr = tmp_path / "run.out", tmp_path / "run.err"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with stdout.open("wb") as output, stderr.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, HASH_TREE, "tree", "--db", database],
            cwd=tmp_path,
            env=example_env(),
            stdout=output,
            stderr=errors,
        )
        try:
            wait_for_text(stderr, "found 2 files under tree", process)
            vanishing.unlink()
        finally:
            holder.execute("COMMIT")
            holder.close()
            returncode = process.wait(timeout=RUN_TIMEOUT)

    assert returncode == 1, stderr.read_text()
    assert stdout.read_bytes() == sha256sum_line(b"kept\n", b"tree/kept.txt")
    report = stderr.read_text()
    assert "hash_tree: tree/gone.txt: FileNotFoundError" in report
    assert "is dead after 4 attempts" in report

    # The same file back, with the size and modification time of the listing.
    vanishing.write_bytes(b"vanishing\n")
    os.utime(vanishing, ns=(listed.st_atime_ns, listed.st_mtime_ns))
    rerun = run_hash_tree("tree", "--db", database, cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stderr.decode()
    assert b"1 hashed before, 0 resumed, 1 retried, 0 enqueued" in rerun.stderr
    assert rerun.stdout == expected_output("tree", tmp_path)


@pytest.mark.processes
def test_hash_tree_reports_unreadable_file(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "open.txt").write_bytes(b"open\n")
    secret = tree / "secret.txt"
    secret.write_bytes(b"secret\n")
    secret.chmod(0)
    try:
        secret.read_bytes()
    except PermissionError:
        pass
    else:
        pytest.skip("this user can read a file with mode 000 (root)")
    database = tmp_path / "h.db"

    try:
        result = run_hash_tree("tree", "--db", database, cwd=tmp_path)
    finally:
        secret.chmod(0o644)
    rerun = run_hash_tree("tree", "--db", database, cwd=tmp_path)

    assert result.returncode == 1
    assert result.stdout == sha256sum_line(b"open\n", b"tree/open.txt")
    assert b"hash_tree: tree/secret.txt: PermissionError" in result.stderr
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert b"1 retried" in rerun.stderr
    assert rerun.stdout == expected_output("tree", tmp_path)


@pytest.mark.processes
def test_hash_tree_rejects_missing_folder(tmp_path: Path) -> None:
    result = run_hash_tree("no-such-folder", "--db", "h.db", cwd=tmp_path)

    assert result.returncode == 2
    assert b"DIR 'no-such-folder' is not a folder" in result.stderr
    assert not (tmp_path / "h.db").exists()


# -- quickstart ----------------------------------------------------------


@pytest.mark.processes
def test_quickstart_delivers_to_maildir(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, QUICKSTART, tmp_path / "out"],
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=False,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    outbox = mailbox.Maildir(tmp_path / "out" / "mail", create=False)
    messages = {message["Subject"]: message for message in outbox}
    assert sorted(messages) == ["Disk full", "Reminder", "Welcome"]
    assert messages["Welcome"]["To"] == "ada@example.com"
    assert "'Lost' to nobody: dead" in result.stdout
    assert "ValueError: invalid address 'nobody'" in result.stdout
    jobs = read_jobs(
        tmp_path / "out" / "queue.db",
        [message["X-Job-Id"] for message in messages.values()],
    )
    started = {
        subject: jobs[message["X-Job-Id"]].started_at
        for subject, message in messages.items()
    }
    assert started["Disk full"] < started["Welcome"], "priority was ignored"


# -- the guide, the API reference and the README -------------------------


def python_blocks(path: Path) -> list[tuple[str, str]]:
    """Return (id, code) for each Python block of a Markdown file.

    The id numbers the block and names the section it is in.
    """
    if not path.exists():
        return []
    blocks = []
    heading = "top"
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if line.startswith("#"):
            heading = re.sub(r"[^a-z0-9]+", "-", line.lstrip("#").lower()).strip("-")
        elif line.strip().startswith("```"):
            fence_body = []
            for code in lines:
                if code.strip() == "```":
                    break
                fence_body.append(code)
            if line.strip() == "```python":
                block_id = f"{len(blocks) + 1:02d}-{heading}"
                blocks.append((block_id, "\n".join(fence_body)))
    return blocks


def run_program(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    program = cwd / "example.py"
    program.write_text(code + "\n")
    return subprocess.run(
        [sys.executable, "-W", "error", program],
        cwd=cwd,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=False,
        text=True,
    )


GUIDE_BLOCKS = python_blocks(GUIDE)
TUTORIAL_BLOCKS = python_blocks(ROOT / "docs" / "tutorial.md")


@pytest.mark.processes
def test_tutorial_programs_run_in_order(tmp_path: Path) -> None:
    """The tutorial's steps run one after another in one folder."""
    assert len(TUTORIAL_BLOCKS) >= 5
    for block_id, code in TUTORIAL_BLOCKS:
        result = run_program(code, tmp_path)
        assert result.returncode == 0, f"{block_id}: {result.stdout}{result.stderr}"

    sent = (tmp_path / "outbox.txt").read_text()
    assert sent == "to ada@example.com: welcome, Ada!\n"


@pytest.mark.processes
@pytest.mark.parametrize(
    "code",
    [code for _, code in GUIDE_BLOCKS],
    ids=[block_id for block_id, _ in GUIDE_BLOCKS],
)
def test_guide_example_runs(code: str, tmp_path: Path) -> None:
    """Every Python block of the guide is a complete program that exits 0."""
    result = run_program(code, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.processes
def test_readme_example_runs(tmp_path: Path) -> None:
    [(_, code)] = python_blocks(README)

    result = run_program(code, tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "welcome, ada!\nJobStatus.COMPLETED\n"


def test_guide_has_examples() -> None:
    assert len(GUIDE_BLOCKS) >= 10


def test_api_reference_documents_every_public_name() -> None:
    text = API_REFERENCE.read_text()
    documented = re.findall(r"^\.\. auto\w+:: pulse_trio\.(\w+)$", text, re.MULTILINE)

    assert sorted(documented) == sorted(pulse_trio.__all__)


def test_readme_quick_start_commands() -> None:
    text = README.read_text()
    install_and_run = (
        "python3 -m venv .venv && .venv/bin/pip install . && "
        ".venv/bin/python examples/hash_tree.py"
    )
    install_and_test = (
        'python3 -m venv .venv && .venv/bin/pip install ".[test]" && '
        ".venv/bin/python -m pytest"
    )

    assert f"```\n{install_and_run}\n```" in text
    assert f"```\n{install_and_test}\n```" in text
    assert install_and_test in (ROOT / ".ci" / "run").read_text()
