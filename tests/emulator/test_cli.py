"""The CLI body ``main()`` in a subprocess: prints its URL, serves, stops on SIGTERM; exit 2
on bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from runner.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN


def _launch(*args: str, prelude: str = "") -> subprocess.Popen[str]:
    code = (f"import sys; {prelude}from runner.emulator import main; "
            f"sys.exit(main({list(args)!r}))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"})


def test_cli_prints_url_and_serves() -> None:
    """main() prints its URL once, serves the Twilio and admin paths, and exits 0 on SIGTERM."""
    proc = _launch("--port", "0", "--generate", "tiny", "--conversation-aps", "10")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("bulkops emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        with urllib.request.urlopen(f"{url}/_emulator/settings", timeout=10) as r:
            settings = json.load(r)
        assert settings["conversation_aps"] == 10.0
        assert settings["account_sid"] == DEFAULT_ACCOUNT_SID
        request = urllib.request.Request(f"{url}/v1/ControlPlane/Stores")
        import base64

        token = base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:{DEFAULT_AUTH_TOKEN}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=10) as r:
            assert len(json.load(r)["stores"]) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_cli_serves_on_the_loop_asked_for_and_says_which(loop: str) -> None:
    """--loop picks the event loop; the ledger's summary names the one that serves."""
    proc = _launch("--port", "0", "--generate", "tiny", "--loop", loop)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        with urllib.request.urlopen(f"{url}/_emulator/ledger/summary", timeout=10) as r:
            assert json.load(r)["loop"] == loop
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_cli_uvloop_missing_is_bad_input() -> None:
    """--loop uvloop where uvloop cannot be imported: exit 2 naming the fix, nothing served."""
    proc = _launch("--port", "0", "--loop", "uvloop", prelude="sys.modules['uvloop'] = None; ")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert "pip install uvloop" in err and "--loop asyncio" in err and "Traceback" not in err
    assert "listening" not in out


@pytest.mark.parametrize(("args", "needle"), [
    pytest.param(["--generate", "nope"], "unknown preset", id="preset"),
    pytest.param(["--port", "x"], "invalid int", id="port"),
    pytest.param(["--fault-500", "3"], "fault_500", id="probability"),
    pytest.param(["--account-sid", "AC123"], "account_sid", id="account"),
    pytest.param(["--product-rate", "memory"], "PRODUCT:RATE:BURST", id="product-rate"),
    pytest.param(["--host", "0.0.0.0"], "loopback", id="host"),
    pytest.param(["--conversations", "9"], "add --generate scale", id="scale-size-without-scale"),
])
def test_cli_bad_arguments(args: list[str], needle: str) -> None:
    """Bad arguments print a clear message on stderr and exit 2."""
    proc = _launch(*args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert needle in err and "Traceback" not in err


def test_cli_bad_seed_file(tmp_path: Path) -> None:
    """A bad seed file exits 2 naming the field."""
    seed = tmp_path / "seed.yaml"
    seed.write_text("conversations: [{state: open}]\n")
    proc = _launch("--seed", str(seed))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "conversations[0].state" in err
