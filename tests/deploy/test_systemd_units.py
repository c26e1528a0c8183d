"""The systemd service and timer in deploy/systemd: read as unit files (always), and verified by
systemd's own ``systemd-analyze verify`` where it is installed."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import build_parser
from runner.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "deploy" / "systemd"
SERVICE = SYSTEMD / "bulkops-retention.service"
TIMER = SYSTEMD / "bulkops-retention.timer"
PROGRAM = "/opt/bulkops/venv/bin/bulkops"  # where the units expect bulkops (README.md there)
# The least time between --max-duration and systemd's TimeoutStartSec (the units keep 30 min).
MARGIN_S = 15 * 60
_SPAN = re.compile(r"(\d+)\s*(d|h|min|m|s)")
_SPAN_UNITS = {"d": 86400, "h": 3600, "min": 60, "m": 60, "s": 1}


def unit(path: Path) -> configparser.ConfigParser:
    """A unit file's sections and keys (a key given twice: its last value), with systemd's
    backslash-continued lines joined."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text().replace("\\\n", " "))
    return parser


def timespan(text: str) -> float:
    """A systemd time span such as ``4h30min`` in seconds."""
    assert re.fullmatch(r"(\s*\d+\s*(d|h|min|m|s))+\s*", text), text
    return float(sum(int(n) * _SPAN_UNITS[u] for n, u in _SPAN.findall(text)))


def bulkops_args(command: str) -> list[str]:
    """The arguments of an Exec line that runs bulkops (a leading "-" only ignores failure)."""
    argv = shlex.split(command.removeprefix("-"))
    assert argv[0] == PROGRAM, argv
    return argv[1:]


def test_the_service_runs_the_night_as_a_scheduled_run_should() -> None:
    """A oneshot run of `bulkops run --resume-or-start --max-duration`, credentials from an
    EnvironmentFile, the budget's exit 7 a success and no other failure one, a start timeout that
    leaves the budget its margin, prune afterwards on the same directory, as a non-root user."""
    service = unit(SERVICE)["Service"]
    assert service["Type"] == "oneshot"
    assert service["EnvironmentFile"].startswith("/etc/")
    assert service.get("User") not in (None, "", "root")
    run = build_parser().parse_args(bulkops_args(service["ExecStart"]))
    assert run.command == "run" and run.resume_or_start
    assert run.max_duration is not None
    assert str(run.checkpoint_dir) == f"/var/lib/{service['StateDirectory']}"
    assert service["StateDirectoryMode"] == "0700"
    success = {int(code) for code in service["SuccessExitStatus"].split()}
    assert success == {ExitCode.OUT_OF_TIME}
    assert timespan(service["TimeoutStartSec"]) >= run.max_duration + MARGIN_S
    prune = build_parser().parse_args(bulkops_args(service["ExecStopPost"]))
    assert prune.command == "prune" and prune.keep >= 1
    assert prune.checkpoint_dir == run.checkpoint_dir
    assert run.metrics_textfile.parent == Path(service["ReadWritePaths"].lstrip("-"))
    assert "TWILIO" not in "".join(service.values()), "credentials only in the EnvironmentFile"


def test_the_service_is_sandboxed() -> None:
    """The hardening baseline: no new privileges, no capabilities, a read-only system, no home,
    a private /tmp and devices, the network families bulkops needs and no others."""
    service = unit(SERVICE)["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_the_timer_catches_up_a_missed_night() -> None:
    """The timer fires nightly, runs a missed night at the next boot, starts the service of its
    own name and is enabled by timers.target."""
    timer = unit(TIMER)
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:00:00"
    assert timer["Timer"]["Persistent"] == "true"
    assert "Unit" not in timer["Timer"], "the timer starts the service of its own name"
    assert TIMER.with_suffix(".service").exists()
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd)",
)
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds no problem (it also warns of unknown keys and bad values,
    so any output fails). The units are copied with bulkops' path pointed at this one, since
    verify checks that the program exists."""
    here = Path(sys.executable).with_name("bulkops")
    if not here.exists():
        here = tmp_path / "bulkops"
        here.write_text(f'#!/bin/sh\nexec {sys.executable} -m runner "$@"\n')
        here.chmod(0o755)
    for path in (SERVICE, TIMER):
        (tmp_path / path.name).write_text(path.read_text().replace(PROGRAM, str(here)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", TIMER.name, SERVICE.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_a_misspelt_key_fails_verify(tmp_path: Path) -> None:
    """The verify test above would see a mistake: a misspelt key is reported."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    broken = tmp_path / TIMER.name
    broken.write_text(TIMER.read_text().replace("Persistent=", "Persistant="))
    (tmp_path / SERVICE.name).write_text(SERVICE.read_text().replace(PROGRAM, "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", broken.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Unknown key 'Persistant'" in done.stderr
