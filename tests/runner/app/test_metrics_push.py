"""--metrics-push when the Pushgateway is not there or not well: the URL checked before
anything is sent, and a gateway that refuses or never answers costs the run a warning, never
its exit code nor more than the push's bounded wait."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from runner.app.metrics import RunLabels
from runner.app.metrics_push import push
from runner.cli import main
from runner.errors import ExitCode
from tests.runner.app.test_metrics import figures
from tests.runner.app.test_metrics_programs import free_port, job_spec
from tests.runner.conftest import point_at, run_cli


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pushgateway:9091", "'pushgateway:9091' is not a Pushgateway URL like http://"),
        ("ftp://gw:21", "'ftp://gw:21' is not a Pushgateway URL like http://pushgateway:9091"),
        ("http://", "'http://' is not a Pushgateway URL"),
        ("http://gw:99999", "'http://gw:99999' is not a Pushgateway URL"),
        ("http://gw:0", "has port 0; give the Pushgateway's port"),
        ("http://u:secret@gw:9091", "the URL carries a user or password; give a URL without"),
        ("http://gw:9091/?x=1", "has a query or fragment; give the base URL only"),
    ],
)
def test_a_bad_push_url_is_refused_before_anything_is_sent(
    url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with a line naming the option, what is wrong and what a good URL looks like
    (argparse stops before the spec is even read, so nothing can be sent)."""
    with pytest.raises(SystemExit) as stopped:
        main(["run", "never-read.yaml", "--metrics-push", url])
    assert stopped.value.code == ExitCode.BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert "argument --metrics-push: " in err
    assert message in err
    assert "secret" not in err  # a password given in the URL is not repeated


async def test_a_gateway_that_refuses_is_a_warning() -> None:
    """Nothing listens on the port: the push says so in the log and returns False."""
    gateway = f"http://127.0.0.1:{free_port()}"
    with anyio.fail_after(5), capture_logs() as logs:
        assert not await push(gateway, figures(), RunLabels("j"))
    (warning,) = [e for e in logs if e["event"] == "metrics_push_failed"]
    assert warning["log_level"] == "warning"
    assert warning["gateway"] == gateway
    assert "refused" in warning["error"].lower()


async def test_a_gateway_that_never_answers_costs_the_bounded_wait_only() -> None:
    """A gateway that takes the connection and never replies: the push gives up after
    ``within`` seconds (its thread times out on its own) instead of holding the run."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog and are never answered
        gateway = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with capture_logs() as logs:
            with anyio.fail_after(5):
                took = await push(gateway, figures(), RunLabels("j"), within=0.2)
                # The next push waits behind the first one's thread, within its own bound.
                again = await push(gateway, figures(), RunLabels("j"), within=0.2)
    assert not took and not again
    warnings = [e for e in logs if e["event"] == "metrics_push_failed"]
    assert len(warnings) == 2
    assert all(w["log_level"] == "warning" and w["gateway"] == gateway for w in warnings)


async def test_a_run_whose_gateway_is_down_still_succeeds(
    start_emulator: Any,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The run deletes everything and exits 0; the periodic push and the final one each leave
    a warning naming the gateway."""
    gateway = f"http://127.0.0.1:{free_port()}"
    async with start_emulator(preset="tiny") as emu:
        point_at(monkeypatch, emu.url)
        spec = job_spec(workdir, "tiny-purge")
        capsys.readouterr()
        code = await run_cli("run", spec, "--metrics-push", gateway, "--log-format", "json")
    assert code == ExitCode.OK
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    failures = [e for e in logged if e["event"] == "metrics_push_failed"]
    assert len(failures) >= 2  # the first periodic push, and the final one
    assert all(e["gateway"] == gateway and e["level"] == "warning" for e in failures)
