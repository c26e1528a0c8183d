"""Files (issue 11 §4): bulkops writes only what it owns and reads only what it trusts.

Each case is judged by the file system (a link's target unchanged, no file truncated, modes
0600), or by what a server recorded (no request reached a host a planted checkpoint names), with
the real CLI in a real process: its exit code and its one-line message, and no traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from runner.app.job import new_run_id, start_header
from runner.app.metrics import RunLabels, write_textfile
from runner.app.unattended import job_lock, job_logs, usable_directory
from runner.errors import CheckpointError, ConfigError, ExitCode, UntrustedFile
from runner.files import check_directory_trust, create_aside, create_new, open_own
from runner.log.lock import open_log
from runner.log.records import Header
from runner.log.replay import read_checkpoint
from runner.plan.planner import build_plan
from runner.spec.config import load_config
from runner.spec.jobspec import load_spec
from tests.runner.app.test_metrics import figures
from tests.runner.conftest import point_at
from tests.runner.test_run_faults import job

STORES = (
    "targets:\n  - kind: memory_stores\n    where: {all: true}\noperations: {poll_interval: 0.05}\n"
)
VICTIM_TEXT = b"a file bulkops did not create: it must not change"
OTHER_UID = 12345
CORPUS = Path(__file__).resolve().parents[2] / "bad_specs"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="giving a file to another user (chown) needs root"
)


async def bulkops(workdir: Path, *argv: str | Path, bound: float = 60) -> tuple[int, str]:
    """Run ``bulkops ARGV`` as a real process in ``workdir``: (exit code, standard error). A
    run that hangs (a FIFO read forever) fails the test after ``bound`` seconds, killed."""
    with anyio.fail_after(bound):
        done = await anyio.run_process(
            [sys.executable, "-m", "runner", *(str(a) for a in argv)],
            cwd=workdir,
            env=dict(os.environ),
            check=False,
        )
    return done.returncode, done.stderr.decode()


def refusal(stderr: str) -> str:
    """The one problem a refused invocation printed (exactly one, and no traceback)."""
    assert "Traceback" not in stderr, stderr
    problems = [line[4:] for line in stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, stderr
    return problems[0]


def victim(directory: Path, name: str = "victim.txt") -> Path:
    """A file of someone else's choosing (0644) that a planted link points at."""
    path = directory / name
    path.write_bytes(VICTIM_TEXT)
    path.chmod(0o644)
    return path


def untouched(path: Path) -> bool:
    """The victim still holds its bytes and its mode."""
    return path.read_bytes() == VICTIM_TEXT and stat.S_IMODE(path.stat().st_mode) == 0o644


def private_regular(path: Path) -> bool:
    """A regular file (not a link) with mode 0600."""
    st = path.lstat()
    return stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block (and the processes it starts) with ``mask`` as the umask."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --- files it writes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"my notes, no newline at the end", id="no-newline"),
        pytest.param(b"line one\nline two\n", id="text"),
        pytest.param(b'{"t":"E","exit":0}\n', id="json-not-a-header"),
    ],
)
async def test_a_checkpoint_path_naming_a_foreign_file_is_refused_and_left_whole(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    """`run --checkpoint FILE` naming an existing file that is not a bulkops log exits 2 with
    "not a bulkops checkpoint; choose another path", and the file keeps every byte."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        notes = workdir / "notes.txt"
        notes.write_bytes(content)

        code, err = await bulkops(workdir, "run", spec, "--checkpoint", notes)

        assert code == ExitCode.BAD_INPUT
        assert "is not a bulkops checkpoint; choose another path" in refusal(err)
        assert notes.read_bytes() == content
        assert (await emu.ledger())["requests"] == []


async def test_a_checkpoint_torn_before_its_header_newline_is_started_again(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one existing file `run --checkpoint` may reuse is what a run killed while starting
    leaves (an empty file or a torn header line): the run starts over in it and finishes."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        log = workdir / "run.jsonl"
        log.write_bytes(b'{"t":"H","v":2,"run":"2026')
        log.chmod(0o600)

        code, err = await bulkops(workdir, "run", spec, "--checkpoint", log)

        assert code == ExitCode.OK, err
        assert read_checkpoint(log).exit_code == ExitCode.OK
        assert len((await emu.ledger())["deletions"]) == len(emu.dataset.stores)


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
async def test_a_checkpoint_path_that_is_a_link_is_refused(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, dangling: bool
) -> None:
    """`run --checkpoint LINK` exits 2 naming the link; its target is neither written nor
    created."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        target = workdir / "elsewhere.txt" if dangling else victim(workdir)
        link = workdir / "run.jsonl"
        link.symlink_to(target)

        code, err = await bulkops(workdir, "run", spec, "--checkpoint", link)

        assert code == ExitCode.BAD_INPUT
        assert f"checkpoint {link} is a symbolic link" in refusal(err)
        assert not target.exists() if dangling else untouched(target)
        assert (await emu.ledger())["requests"] == []


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param("link", id="link"),
        pytest.param("other-user", id="other-user", marks=needs_root),
        pytest.param("hard-link", id="hard-link"),
    ],
)
async def test_a_planted_job_lock_is_refused_and_its_target_left_whole(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, plant: str
) -> None:
    """A job lock that is a link, another user's file or a second name of another file is
    refused (exit 2, naming the lock): it is never truncated or written through."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        directory = workdir / "checkpoints"
        directory.mkdir()
        lock = directory / ".job.lock"
        target = victim(workdir)
        if plant == "link":
            lock.symlink_to(target)
        elif plant == "hard-link":
            os.link(target, lock)
        else:
            lock.write_bytes(VICTIM_TEXT)
            lock.chmod(0o644)
            os.chown(lock, OTHER_UID, OTHER_UID)
            target = lock

        code, err = await bulkops(workdir, "run", spec, "--checkpoint-dir", directory)

        assert code == ExitCode.BAD_INPUT
        reason = {"link": "is a symbolic link", "hard-link": "has 2 hard links"}.get(
            plant, f"belongs to another user (uid {OTHER_UID})"
        )
        assert f"job lock {lock} {reason}" in refusal(err)
        assert untouched(target)
        assert (await emu.ledger())["requests"] == []


async def test_reports_are_written_as_new_private_files_whatever_is_planted(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With links planted at the report asides' names and at `report --out`, and umask 0, a
    run's checkpoint, reports and lock are regular files of mode 0600 and the links' targets
    are unchanged."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        log = workdir / "run.jsonl"
        csv_target, json_target, out_target = (victim(workdir, f"v{i}.txt") for i in range(3))
        (workdir / "run.report.csv.partial").symlink_to(csv_target)
        (workdir / "run.report.json.partial").symlink_to(json_target)
        out = workdir / "out.csv"
        out.symlink_to(out_target)

        with umask(0):
            code, err = await bulkops(workdir, "run", spec, "--checkpoint", log)
            report_code, report_err = await bulkops(workdir, "report", log, "--out", out)

        assert (code, report_code) == (0, 0), err + report_err
        for path in (csv_target, json_target, out_target):
            assert untouched(path)
        for name in ("run.jsonl", "run.report.csv", "run.report.json", ".job.lock", "out.csv"):
            assert private_regular(workdir / name), name
        assert not list(workdir.glob("*.partial"))
        assert (workdir / "out.csv").read_text() == (workdir / "run.report.csv").read_text()


async def test_a_plan_is_written_as_a_new_private_file_whatever_is_planted(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan --out PLAN` with a link planted at PLAN.partial (umask 0) writes a regular 0600
    plan and leaves the link's target unchanged."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        plan = workdir / "stores.plan"
        target = victim(workdir)
        (workdir / "stores.plan.partial").symlink_to(target)

        with umask(0):
            code, err = await bulkops(workdir, "plan", spec, "--out", plan)

        assert code == ExitCode.OK, err
        assert untouched(target)
        assert private_regular(plan)
        assert not (workdir / "stores.plan.partial").exists()


def test_the_primitives_never_open_what_is_already_there(tmp_path: Path) -> None:
    """create_new refuses any existing name (a dangling link too), open_own refuses a link, and
    create_aside replaces a planted aside link without touching its target."""
    target = victim(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")

    for path in (target, link, dangling):
        with pytest.raises(FileExistsError):
            create_new(path)
    with pytest.raises(UntrustedFile, match="is a symbolic link"):
        open_own(link, os.O_RDWR, create=True)
    (tmp_path / "out.partial").symlink_to(target)
    aside, fd = create_aside(tmp_path / "out")
    os.close(fd)

    assert not (tmp_path / "nowhere").exists()
    assert untouched(target)
    assert private_regular(aside)


def test_the_write_probe_leaves_nothing_and_trusts_the_directory_first(tmp_path: Path) -> None:
    """usable_directory creates a missing directory 0700, leaves no probe behind, and refuses
    a directory every user can write before writing in it."""
    created = tmp_path / "new" / "checkpoints"
    assert usable_directory(created) == created
    assert stat.S_IMODE(created.stat().st_mode) == 0o700
    assert list(created.iterdir()) == []

    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o1777)
    with pytest.raises(CheckpointError, match=r"writable by every user \(mode 1777\)"):
        usable_directory(open_to_all)
    assert list(open_to_all.iterdir()) == []


# --- the checkpoint directory and its checkpoints ----------------------------------------------


@pytest.mark.parametrize(
    ("mode", "owner", "fragment"),
    [
        pytest.param(0o777, None, "is writable by every user (mode 0777)", id="o+w"),
        pytest.param(0o1777, None, "is writable by every user (mode 1777)", id="sticky-o+w"),
        pytest.param(
            0o775,
            (0, OTHER_UID),
            f"is writable by group {OTHER_UID}, which this process is not in",
            id="g+w-foreign-group",
            marks=needs_root,
        ),
        pytest.param(
            0o755,
            (OTHER_UID, OTHER_UID),
            f"belongs to another user (uid {OTHER_UID})",
            id="other-owner",
            marks=needs_root,
        ),
    ],
)
async def test_a_checkpoint_directory_others_can_write_is_refused(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: int,
    owner: tuple[int, int] | None,
    fragment: str,
) -> None:
    """A checkpoint directory writable by every user, by a group this process is not in, or
    owned by another user is refused with exit 2 and its fix; nothing is written or sent."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        directory = workdir / "checkpoints"
        directory.mkdir()
        directory.chmod(mode)
        if owner is not None:
            os.chown(directory, *owner)

        code, err = await bulkops(workdir, "run", spec, "--checkpoint-dir", directory)

        problem = refusal(err)
        assert code == ExitCode.BAD_INPUT
        assert f"checkpoint directory {directory} {fragment}" in problem
        if mode & stat.S_IWOTH:
            assert problem.endswith(f"chmod o-w {directory}")
        assert list(directory.iterdir()) == []
        assert (await emu.ledger())["requests"] == []


@pytest.mark.parametrize("command", ["resume-or-start", "resume"])
@pytest.mark.parametrize(
    "plant",
    [
        pytest.param("other-user", id="other-user", marks=needs_root),
        pytest.param("link", id="link"),
    ],
)
async def test_a_checkpoint_of_another_user_or_a_link_is_refused(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, command: str, plant: str
) -> None:
    """An unfinished checkpoint of this job owned by another user, or a link to one, is neither
    resumed by `--resume-or-start` nor by `resume` (exit 2 naming it); nothing is sent and the
    file is unchanged."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, STORES)
        directory = workdir / "checkpoints"
        log = plant_log(spec, directory, hosts=hosts_of(emu.url))
        if plant == "other-user":
            os.chown(log, OTHER_UID, OTHER_UID)
            reason = f"belongs to another user (uid {OTHER_UID})"
            named = log
        else:
            real = workdir / log.name
            log.rename(real)
            log.symlink_to(real)
            reason, named, log = "is a symbolic link", log, real
        before = log.read_bytes()

        argv: list[str | Path] = (
            ["run", spec, "--resume-or-start", "--checkpoint-dir", directory]
            if command == "resume-or-start"
            else ["resume", named]
        )
        code, err = await bulkops(workdir, *argv)

        assert code == ExitCode.BAD_INPUT
        assert f"{named}" in refusal(err)
        assert reason in refusal(err)
        assert log.read_bytes() == before
        assert (await emu.ledger())["requests"] == []


@needs_root
async def test_another_jobs_checkpoint_of_another_user_does_not_block_a_run(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint of another job owned by another user (a shared volume) is ignored by
    `--resume-or-start`, which starts this job and finishes it."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        other = plant_log(job(workdir, STORES, name="other"), workdir / "checkpoints", hosts=None)
        os.chown(other, OTHER_UID, OTHER_UID)
        spec = job(workdir, STORES)

        code, err = await bulkops(
            workdir, "run", spec, "--resume-or-start", "--checkpoint-dir", workdir / "checkpoints"
        )

        assert code == ExitCode.OK, err
        assert len((await emu.ledger())["deletions"]) == len(emu.dataset.stores)


def hosts_of(url: str) -> dict[str, str]:
    """The hosts a header records for a run aimed at ``url`` (both products)."""
    return {"conversations": url, "memory": url}


def plant_log(
    spec: Path,
    directory: Path,
    *,
    hosts: dict[str, str] | None,
    config: Path | None = None,
) -> Path:
    """An unfinished checkpoint of ``spec``'s job, as a run of this bulkops (or, with
    ``hosts=None``, an older one) would leave it when killed: its header only."""
    plan = build_plan(load_spec(spec), datetime.now(UTC))
    run_id = new_run_id(datetime.now(UTC))
    directory.mkdir(exist_ok=True)
    log = directory / f"{plan.name}-{run_id}.jsonl"
    header = start_header(plan, run_id, config, spec, log, None, hosts=hosts)
    with open_log(log, header):
        pass
    return log


@contextlib.asynccontextmanager
async def recording_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A plain aiohttp server that answers 404 to anything and records every request it gets
    (method, path, whether it carried an Authorization header)."""
    seen: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "authorization": "Authorization" in request.headers,
            }
        )
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("command", ["resume-or-start", "resume"])
@pytest.mark.parametrize(
    ("recorded", "with_config"),
    [
        pytest.param("none", False, id="no-hosts-recorded"),
        pytest.param("planted", False, id="planted-hosts"),
        pytest.param("none", True, id="no-hosts-recorded-with-config"),
        pytest.param("invocation", True, id="invocation-hosts-with-config"),
    ],
)
async def test_a_planted_checkpoint_never_chooses_where_credentials_go(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    recorded: str,
    with_config: bool,
) -> None:
    """A checkpoint whose header names a config aimed at another server never sends that
    server a request (no Authorization header reaches it): the config is the invocation's;
    hosts recorded in the header that differ from the invocation's are refused naming both; a
    header without hosts but naming a config asks for --config. With the invocation's own
    config, the run resumes against its server."""
    for name in ("BULKOPS_CONVERSATIONS_URL", "BULKOPS_MEMORY_URL"):
        monkeypatch.delenv(name, raising=False)  # hosts come from config files only here
    async with start_emulator() as emu, recording_server() as (planted_url, planted_seen):
        spec = job(workdir, STORES)
        own, evil = workdir / "own.yaml", workdir / "other.yaml"
        for path, url in ((own, emu.url), (evil, planted_url)):
            path.write_text(f"base_urls: {{conversations: '{url}', memory: '{url}'}}\n")
        hosts = {"none": None, "planted": hosts_of(planted_url), "invocation": hosts_of(emu.url)}
        directory = workdir / "checkpoints"
        log = plant_log(spec, directory, hosts=hosts[recorded], config=evil)

        argv: list[str | Path] = (
            ["run", spec, "--resume-or-start", "--checkpoint-dir", directory]
            if command == "resume-or-start"
            else ["resume", log]
        )
        if with_config:
            argv += ["--config", own]
        code, err = await bulkops(workdir, *argv)

        assert planted_seen == []
        ledger = await emu.ledger()
        if with_config:
            assert code == ExitCode.OK, err
            assert len(ledger["deletions"]) == len(emu.dataset.stores)
            return
        assert code == ExitCode.BAD_INPUT
        assert ledger["requests"] == []
        if recorded == "none":
            assert "bulkops never takes the config from a checkpoint: pass --config" in (
                refusal(err)
            )
        else:
            assert "Traceback" not in err
            assert "was started against other API hosts" in err
            default = "https://conversations.twilio.com"
            assert f"the run used '{planted_url}', this invocation '{default}'" in err


@needs_root
def test_a_kubernetes_fsgroup_volume_keeps_working(public_tmp: Path) -> None:
    """In a root-owned, setgid, group-writable directory of the process's own group (what a
    Kubernetes fsGroup volume is), a non-root process checks, locks, creates, finds and reopens
    its checkpoint; its files are its own, mode 0600. The same log is refused to another user."""
    directory = public_tmp / "volume"
    directory.mkdir()
    os.chown(directory, 0, 10001)
    directory.chmod(0o2775)
    header = Header(
        run_id="20261122T060000Z-abcdef",
        job="job",
        fingerprint="f" * 64,
        frozen_now="2026-11-22T06:00:00+00:00",
        times={},
        spec_path="job.yaml",
        config_path=None,
        version="test",
        started="2026-11-22T06:00:00+00:00",
    )
    code, problem = as_user(10001, 10001, lambda: cron_step(directory, header))

    assert (code, problem) == (0, "")
    log = directory / "job-1.jsonl"
    for path in (log, directory / ".job.lock"):
        st = path.lstat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (10001, 10001, 0o600)
    with pytest.raises(CheckpointError, match="writable by group 10001, which this process"):
        job_logs(directory, "job", None)  # root is not in the pod's group
    directory.chmod(0o2755)
    with pytest.raises(CheckpointError, match=r"a checkpoint of job 'job' in the checkpoint d"):
        job_logs(directory, "job", None)  # nor is the checkpoint root's


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temporary directory another user can reach (pytest's tmp_path sits in a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="bulkops-fsgroup-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def cron_step(directory: Path, header: Header) -> None:
    """What a scheduled run does to its checkpoint directory, without the network."""
    usable_directory(directory)
    with job_lock(directory, "job", None):
        with open_log(directory / "job-1.jsonl", header):
            pass
        (found,) = job_logs(directory, "job", None)
        with open_log(found.path, None):
            pass


def as_user(uid: int, gid: int, step: Any) -> tuple[int, str]:
    """Run ``step`` in a forked child that became ``uid``:``gid`` (no other group); (exit code,
    the error it met)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: the child execs
        pid = os.fork()  # nothing, it only calls code already imported and exits at once
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_end)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            step()
        except BaseException as exc:
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        problem = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), problem


def test_directory_trust_accepts_a_private_directory(tmp_path: Path) -> None:
    """The directories tests and most users have (owned, 0700 or 0755) pass the trust check."""
    for mode in (0o700, 0o755, 0o2775):
        tmp_path.chmod(mode)
        check_directory_trust(tmp_path)


# --- files it reads -----------------------------------------------------------------------------


def make_fifo(path: Path) -> Path:
    """A named pipe no one writes to: reading it would wait forever."""
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        pytest.param("spec-fifo", "job.yaml: is a FIFO (named pipe), not a regular", id="s-fifo"),
        pytest.param("spec-zero", "is a character device, not a regular file", id="spec-dev-zero"),
        pytest.param("spec-big", "job.yaml: is larger than 1,000,000 bytes", id="spec-too-big"),
        pytest.param("config-fifo", "c.yaml: is a FIFO (named pipe), not a regular", id="c-fifo"),
        pytest.param("config-big", "c.yaml: is larger than 1 MiB", id="config-too-big"),
        pytest.param(
            "manifest-fifo",
            "targets[0].from_file: ids.jsonl is a FIFO (named pipe), not a regular file",
            id="manifest-fifo",
        ),
        pytest.param(
            "manifest-zero",
            "targets[0].from_file: ids.jsonl is a character device, not a regular file",
            id="manifest-dev-zero",
        ),
    ],
)
async def test_specs_configs_and_manifests_must_be_regular_bounded_files(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, case: str, fragment: str
) -> None:
    """A FIFO, /dev/zero (through a link, as a ConfigMap mounts files) or an oversized file as
    spec, config or manifest is refused at once with exit 2 naming the field and the fix;
    nothing is sent."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = workdir / "job.yaml"
        config = workdir / "c.yaml"
        config.write_text("log_level: info\n")
        manifest = workdir / "ids.jsonl"
        manifest.write_text(f'"mem_store_{"0" * 26}"\n')
        spec.write_text(
            "version: 1\nname: job\ntargets:\n  - kind: memory_stores\n    from_file: ids.jsonl\n"
        )
        if case == "spec-fifo":
            spec.unlink()
            make_fifo(spec)
        elif case == "spec-zero":
            spec.unlink()
            spec.symlink_to("/dev/zero")
        elif case == "spec-big":
            spec.write_text("version: 1\n" + "#" * 1_000_000 + "\n")
        elif case == "config-fifo":
            config.unlink()
            make_fifo(config)
        elif case == "config-big":
            config.write_text("log_level: info\n" + "#" * (1 << 20) + "\n")
        elif case == "manifest-fifo":
            manifest.unlink()
            make_fifo(manifest)
        else:
            manifest.unlink()
            manifest.symlink_to("/dev/zero")

        code, err = await bulkops(workdir, "run", spec, "--config", config, bound=30)

        assert code == ExitCode.BAD_INPUT
        problem = refusal(err)
        assert fragment in problem
        assert problem.endswith(("pipe or device would never end)", "manifest)", "1 MiB"))
        assert (await emu.ledger())["requests"] == []


@pytest.mark.parametrize(
    ("name", "pasted"),
    [
        ("71-config-secret-in-env-name.yaml", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        ("72-config-number-in-env-name.yaml", "123456789012345678901234"),
        ("73-config-api-secret-in-env-name.yaml", "Xk9aB2cD4eF6gH8iJ0kL2mN4oP6qR8sT"),
    ],
)
def test_a_secret_pasted_as_a_variable_name_is_never_echoed(name: str, pasted: str) -> None:
    """A secret written where a credentials.*_env variable name belongs is refused with a
    message that names the field and never contains the value."""
    path = CORPUS / name
    assert pasted in path.read_text()
    with pytest.raises(ConfigError) as info:
        load_config(path, {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32})

    assert "_env must name an environment variable" in str(info.value)
    assert "the value given is not shown" in str(info.value)
    assert pasted not in str(info.value)


def test_the_metrics_textfile_never_writes_through_a_link_or_reads_a_fifo(tmp_path: Path) -> None:
    """A link planted at the textfile's (predictable) aside name is replaced, not written
    through, and a FIFO where the previous textfile was is not read (it would never end)."""
    out = tmp_path / "bulkops.prom"
    make_fifo(out)
    target = victim(tmp_path)
    aside = tmp_path / f".bulkops.prom.{os.getpid()}.{threading.get_ident()}.tmp"
    aside.symlink_to(target)

    write_textfile(out, figures(exit_code=1), RunLabels("job"))

    assert untouched(target)
    assert not aside.exists()
    st = out.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
