"""`bulkops prune --keep N`: the files of old finished runs go, nothing else does — judged by
what is left in the checkpoint directory (and outside it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runner import __version__
from runner.app.job import log_name
from runner.app.verify_output import verify_path
from runner.cli import main
from runner.errors import ExitCode
from runner.log.lock import open_log
from runner.log.records import Header, encode, footer_record
from runner.log.snapshot import snapshot_path
from runner.log.verify_journal import journal_path
from runner.plan.shard import parse_shard
from runner.report.output import report_paths
from tests.runner.conftest import checkpoints, deleted, point_at, run_cli
from tests.runner.test_run_faults import job

SMALL = (
    "targets:\n  - {kind: memory_stores, where: {all: true}}\noperations: {poll_interval: 0.1}\n"
)


def write_run(
    directory: Path,
    job_name: str,
    day: int,
    exit_code: int | None,
    *,
    shard: str | None = None,
) -> list[Path]:
    """A run's log (header, and a footer if ``exit_code``) and its reports, as bulkops names
    them, started on November ``day``; its files, the log first."""
    run_id = f"202611{day:02d}T020000Z-{day:06x}"
    started = f"2026-11-{day:02d}T02:00:00+00:00"
    header = Header(
        run_id=run_id,
        job=job_name,
        fingerprint="0" * 64,
        frozen_now=started,
        times={},
        spec_path=f"../{job_name}.yaml",
        config_path=None,
        version=__version__,
        started=started,
        shard=shard,
    )
    log = directory / log_name(job_name, None if shard is None else parse_shard(shard), run_id)
    lines = encode(header.to_record())
    if exit_code is not None:
        lines += encode(footer_record(exit_code, 1))
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(lines)
    reports = list(report_paths(log).values())
    for report in reports:
        report.write_text("id,kind\n")
        report.chmod(0o600)
    return [log, *reports]


@pytest.fixture
def ckdir(tmp_path: Path) -> Path:
    """An empty checkpoint directory bulkops trusts (0700, this user's)."""
    directory = tmp_path / "checkpoints"
    directory.mkdir(mode=0o700)
    return directory


def prune_cli(directory: Path, *args: str) -> int:
    """``bulkops prune --checkpoint-dir DIRECTORY ARGS``, in process."""
    return main(["prune", "--checkpoint-dir", str(directory), *args])


def left(directory: Path) -> set[str]:
    """The names in ``directory``."""
    return set(os.listdir(directory))


def test_only_finished_runs_older_than_the_newest_n_go(
    ckdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Of a job's runs beyond the 2 newest, those that ended 0 or 1 are deleted with their
    reports; an unfinished one (no footer) and resumable ones (7, 130, 3) stay, as does the
    job's lock."""
    gone = [*write_run(ckdir, "nightly", 1, 0), *write_run(ckdir, "nightly", 2, 1)]
    kept = [
        *write_run(ckdir, "nightly", 3, None),
        *write_run(ckdir, "nightly", 4, ExitCode.OUT_OF_TIME),
        *write_run(ckdir, "nightly", 5, ExitCode.INTERRUPTED),
        *write_run(ckdir, "nightly", 6, ExitCode.ABORTED),
        *write_run(ckdir, "nightly", 7, 0),
        *write_run(ckdir, "nightly", 8, 0),
    ]
    (ckdir / ".nightly.lock").write_text("123\n")
    before = left(ckdir)

    assert prune_cli(ckdir, "--keep", "2", "--dry-run") == ExitCode.OK
    assert left(ckdir) == before, "a dry run deletes nothing"
    out = capsys.readouterr().out
    assert out.count("would delete: nightly-") == 2
    assert "would delete 6 files of 2 runs" in out

    assert prune_cli(ckdir, "--keep", "2") == ExitCode.OK
    assert left(ckdir) == before - {p.name for p in gone}
    assert all(p.exists() for p in kept)
    out = capsys.readouterr().out
    assert "stopped with exit 7: resumable" in out
    assert "stopped by a safety brake (exit 3)" in out
    assert "no footer" in out
    # Pruning again finds nothing more to do.
    assert prune_cli(ckdir, "--keep", "2") == ExitCode.OK
    assert left(ckdir) == before - {p.name for p in gone}


def test_a_verify_file_goes_with_its_run(ckdir: Path) -> None:
    """The evidence `bulkops verify` wrote beside an old run's log, and the journal of a verify
    of it, are that run's files: deleted with it, kept with a kept run."""
    old, new = write_run(ckdir, "nightly", 1, 0), write_run(ckdir, "nightly", 2, 0)
    for run in (old, new):
        for path in (verify_path(run[0]), journal_path(run[0])):
            path.write_text("{}\n")
            path.chmod(0o600)

    assert prune_cli(ckdir, "--keep", "1") == ExitCode.OK
    assert left(ckdir) == {
        *(p.name for p in new),
        verify_path(new[0]).name,
        journal_path(new[0]).name,
    }


def test_each_job_and_each_shard_keeps_its_own_newest(ckdir: Path) -> None:
    """`--keep 1` keeps the newest run of every job, and of every shard of a job."""
    old = [
        *write_run(ckdir, "a", 1, 0),
        *write_run(ckdir, "a", 2, 0, shard="0/2"),
        *write_run(ckdir, "a", 3, 0, shard="1/2"),
        *write_run(ckdir, "b", 4, 0),
    ]
    newest = [
        *write_run(ckdir, "a", 5, 0),
        *write_run(ckdir, "a", 6, 0, shard="0/2"),
        *write_run(ckdir, "a", 7, 0, shard="1/2"),
        *write_run(ckdir, "b", 8, 0),
    ]
    assert prune_cli(ckdir, "--keep", "1") == ExitCode.OK
    assert left(ckdir) == {p.name for p in newest}
    assert not any(p.exists() for p in old)


def test_a_log_a_process_holds_is_kept(ckdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An old finished log that a process is driving again (it holds the log's lock, as
    `resume --retry-failed` does) is kept, files and all."""
    held = write_run(ckdir, "nightly", 1, ExitCode.FAILURES)
    write_run(ckdir, "nightly", 2, 0)
    with open_log(held[0], None):
        assert prune_cli(ckdir, "--keep", "1") == ExitCode.OK
    assert all(p.exists() for p in held)
    assert "in use by another bulkops process" in capsys.readouterr().out


def test_what_it_does_not_recognise_is_left_alone_and_reported(
    ckdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Links (to a log outside the directory, or in place of an old run's report), a log under
    a name its header does not give, a hard-linked log, a directory, a plan and stray files are
    neither deleted nor followed; each is named in the output."""
    outside = tmp_path / "elsewhere"
    outside.mkdir(mode=0o700)
    foreign = write_run(outside, "nightly", 1, 0)
    (ckdir / foreign[0].name).symlink_to(foreign[0])
    old = write_run(ckdir, "nightly", 2, 0)
    old[1].unlink()
    old[1].symlink_to(foreign[1])  # the old run's CSV report is a link out of the directory
    renamed = write_run(ckdir, "nightly", 3, 0)[0]
    renamed.rename(ckdir / "nightly-copy.jsonl")
    linked = write_run(ckdir, "other", 4, 0)[0]
    os.link(linked, tmp_path / "second-name")
    write_run(ckdir, "other", 5, 0)
    (ckdir / "metrics").mkdir()
    (ckdir / "retention.plan").write_text("{}\n")
    (ckdir / "notes.txt").write_text("mine\n")
    write_run(ckdir, "nightly", 9, 0)

    assert prune_cli(ckdir, "--keep", "1") == ExitCode.OK
    assert all(p.read_text() for p in foreign), "nothing outside the directory is touched"
    assert (ckdir / foreign[0].name).is_symlink() and old[1].is_symlink()
    assert not old[0].exists() and not old[2].exists(), "the old run's own files went"
    assert linked.exists() and (ckdir / "nightly-copy.jsonl").exists()
    assert {"metrics", "retention.plan", "notes.txt"} <= left(ckdir)
    out = capsys.readouterr().out
    for name in (
        foreign[0].name,
        old[1].name,
        "nightly-copy.jsonl",
        linked.name,
        "metrics",
        "retention.plan",
        "notes.txt",
    ):
        assert f"left alone: {name} (" in out, name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--keep", "0"], "--keep: 0 keeps no run: give 1 or more", id="keep-0"),
        pytest.param(["--keep", "x"], "'x' is not a whole number of runs", id="keep-text"),
        pytest.param([], "the following arguments are required: --keep", id="no-keep"),
    ],
)
def test_a_bad_keep_is_refused(
    ckdir: Path, args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --keep that is missing, not a number or below 1 exits 2, naming the fix; nothing goes."""
    files = write_run(ckdir, "nightly", 1, 0) + write_run(ckdir, "nightly", 2, 0)
    with pytest.raises(SystemExit) as stopped:
        prune_cli(ckdir, *args)
    assert stopped.value.code == ExitCode.BAD_INPUT
    assert expected in capsys.readouterr().err
    assert all(p.exists() for p in files)


def test_a_directory_others_can_write_is_refused(
    ckdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a directory others could plant files in, prune deletes nothing (exit 2, the fix)."""
    files = write_run(ckdir, "nightly", 1, 0) + write_run(ckdir, "nightly", 2, 0)
    ckdir.chmod(0o777)
    assert prune_cli(ckdir, "--keep", "1") == ExitCode.BAD_INPUT
    assert f"chmod o-w {ckdir}" in capsys.readouterr().err
    assert all(p.exists() for p in files)


async def test_real_runs_are_pruned_to_the_newest(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real runs of a job, then `prune --keep 1`: the first run's log and reports go, the
    second's stay, and `--resume-or-start` still finds the second finished."""
    async with start_emulator() as emu:
        point_at(monkeypatch, emu.url)
        spec = job(workdir, SMALL)
        assert await run_cli("run", spec) == ExitCode.OK
        assert deleted(await emu.ledger()), "the first run deleted something"
        assert await run_cli("run", spec) == ExitCode.OK
        first, second = checkpoints(workdir)
        directory = workdir / "checkpoints"
        assert await run_cli("prune", "--keep", "1", "--checkpoint-dir", directory) == 0
        assert left(directory) == {
            second.name,
            *(p.name for p in report_paths(second).values()),
            snapshot_path(second).name,  # a run's resume snapshot stays and goes with it
            ".job.lock",
        }
        assert not first.exists()
        assert not snapshot_path(first).exists()
        cron = ("run", spec, "--resume-or-start", "--min-interval", "1h")
        assert await run_cli(*cron) == ExitCode.OK
        assert checkpoints(workdir) == [second], "the finished run was found: nothing to do"
