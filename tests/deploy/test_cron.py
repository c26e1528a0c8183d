"""deploy/cron: the crontab's lines are commands bulkops accepts, and the bulkops-cron wrapper,
run as cron runs it (an empty environment), takes the credentials from its file, sends bulkops'
lines to syslog and exits with bulkops' own exit code."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from runner.cli import build_parser
from runner.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    EmulatorSettings,
    generate,
    running_emulator,
)
from runner.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
CRON = REPO / "deploy" / "cron"
WRAPPER = CRON / "bulkops-cron"
# logger's stand-in: what would go to syslog, appended to $LOGGER_OUT after its tag.
FAKE_LOGGER = """#!/bin/sh
tag=""
msg=""
while [ $# -gt 0 ]; do
    case $1 in
        -t) tag=$2; shift 2 ;;
        -p) shift 2 ;;
        --) shift; msg="$*"; break ;;
        *) shift ;;
    esac
done
if [ -n "$msg" ]; then echo "$tag: $msg"; else sed "s/^/$tag: /"; fi >> "$LOGGER_OUT"
"""


def test_every_crontab_line_is_a_command_bulkops_accepts() -> None:
    """Each job line of deploy/cron/crontab runs bulkops-cron as a user, with arguments bulkops'
    own parser accepts: the nightly run (resume-or-start, a time budget) and a prune of the same
    checkpoint directory."""
    commands = {}
    for line in (CRON / "crontab").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, line
        assert "%" not in fields[6], "cron turns % into a newline"
        program, *args = shlex.split(fields[6])
        assert program == "/opt/bulkops/deploy/cron/bulkops-cron"
        parsed = build_parser().parse_args(args)
        commands[parsed.command] = parsed
    run, prune = commands["run"], commands["prune"]
    assert run.resume_or_start and run.max_duration and run.log_format == "json"
    assert prune.keep >= 1 and prune.checkpoint_dir == run.checkpoint_dir


def cron_environment(tmp_path: Path, credentials: str, mode: int = 0o600) -> dict[str, str]:
    """What cron gives a job (almost nothing), plus where the wrapper finds bulkops (this tree's,
    as a program), the credentials file, and a logger that writes to a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "logger").write_text(FAKE_LOGGER)
    (bin_dir / "logger").chmod(0o755)
    bulkops = tmp_path / "bulkops"
    bulkops.write_text(f'#!/bin/sh\nexec {sys.executable} -m runner "$@"\n')
    bulkops.chmod(0o755)
    env_file = tmp_path / "credentials.env"
    env_file.write_text(credentials)
    env_file.chmod(mode)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "LOGGER_OUT": str(tmp_path / "syslog"),
        "BULKOPS_ENV_FILE": str(env_file),
        "BULKOPS": str(bulkops),
    }


def wrapper(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """bulkops-cron ARGS, run as cron would: this environment only, no terminal, no input."""
    return subprocess.run(
        [str(WRAPPER), *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_programs_exit_code_is_the_wrappers(tmp_path: Path) -> None:
    """An exit 7 (the time budget) comes out of the wrapper as 7, not as logger's 0, and the
    program's lines, standard error included, are in syslog. (A stand-in program that exits 7
    at once: bulkops itself is run by the last test.)"""
    env = cron_environment(tmp_path, "TWILIO_ACCOUNT_SID=REPLACE_ME\n")
    stand_in = Path(env["BULKOPS"])
    stand_in.write_text(
        f'#!/bin/sh\necho "out $*"\necho "err $TWILIO_ACCOUNT_SID" >&2\n'
        f"exit {int(ExitCode.OUT_OF_TIME)}\n"
    )
    done = wrapper(env, "run", "job.yaml", cwd=tmp_path)
    assert done.returncode == ExitCode.OUT_OF_TIME
    assert (
        tmp_path / "syslog"
    ).read_text() == "bulkops: out run job.yaml\nbulkops: err REPLACE_ME\n"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param(0o644, "is readable by every user (mode 644): chmod 600", id="world-readable"),
        pytest.param(0o620, "is writable by others (mode 620): chmod 600", id="group-writable"),
    ],
)
def test_a_credentials_file_others_can_use_is_refused(
    tmp_path: Path, mode: int, expected: str
) -> None:
    """A credentials file others could read (or write: it is run by the shell) stops the wrapper
    before bulkops starts: exit 2, the fix on standard error (cron mails it) and in syslog."""
    env = cron_environment(tmp_path, "TWILIO_ACCOUNT_SID=REPLACE_ME\n", mode)
    done = wrapper(env, "prune", "--keep", "1", "--checkpoint-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT
    assert expected in done.stderr
    assert expected in (tmp_path / "syslog").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_credentials_file_of_another_user_is_refused(tmp_path: Path) -> None:
    """A credentials file another user owns (who could put commands in it: the shell runs it)
    stops the wrapper before bulkops starts: exit 2, and the fix."""
    env = cron_environment(tmp_path, "TWILIO_ACCOUNT_SID=REPLACE_ME\n")
    os.chown(env["BULKOPS_ENV_FILE"], 12345, 12345)
    done = wrapper(env, "prune", "--keep", "1", "--checkpoint-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT
    assert "belongs to another user (uid 12345), who could put commands in it" in done.stderr


def test_a_missing_credentials_file_is_named(tmp_path: Path) -> None:
    """Without its credentials file the wrapper says which file and how to fix it, exit 2."""
    env = cron_environment(tmp_path, "")
    env["BULKOPS_ENV_FILE"] = str(tmp_path / "nowhere.env")
    done = wrapper(env, "prune", "--keep", "1", cwd=tmp_path)
    assert done.returncode == ExitCode.BAD_INPUT
    assert f"cannot read {tmp_path / 'nowhere.env'} (the credentials)" in done.stderr


async def test_a_cron_run_takes_its_credentials_from_the_file(tmp_path: Path) -> None:
    """In cron's empty environment the nightly command deletes what its job selects: the
    credentials (and here the emulator's address) come from the file alone; the run's JSON
    lines are in syslog and the exit code is bulkops' 0."""
    settings = EmulatorSettings(operation_pending_s=0.05, operation_running_s=0.05)
    async with running_emulator(settings, generate("demo", seed=0)) as url:
        env = cron_environment(
            tmp_path,
            f"TWILIO_ACCOUNT_SID={DEFAULT_ACCOUNT_SID}\nTWILIO_AUTH_TOKEN={DEFAULT_AUTH_TOKEN}\n"
            f"BULKOPS_CONVERSATIONS_URL={url}\nBULKOPS_MEMORY_URL={url}\n",
        )
        assert not any(name.startswith("TWILIO") for name in env)
        spec = tmp_path / "nightly.yaml"
        spec.write_text(
            "version: 1\nname: nightly\ntargets:\n  - {kind: memory_stores, where: {all: true}}\n"
            "operations: {poll_interval: 0.1}\n"
        )
        args = ["run", str(spec), "--resume-or-start", "--max-duration", "1h"]
        args += ["--checkpoint-dir", str(tmp_path / "checkpoints"), "--log-format", "json"]
        done = await anyio.to_thread.run_sync(lambda: wrapper(env, *args, cwd=tmp_path))
    assert done.returncode == ExitCode.OK, done.stderr
    syslog = (tmp_path / "syslog").read_text()
    assert '"event": "run_finished"' in syslog and '"deleted": 3' in syslog
    assert os.listdir(tmp_path / "checkpoints")
