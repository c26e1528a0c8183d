"""Shards list only their share: a shard pages through the top-level lists like every other, but
lists the messages and participants of its own conversations only — judged by the emulator's
ledger of every GET, for `plan --shard` and `run --shard`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from runner.engine.admission import Admission, Verdict
from runner.errors import ExitCode
from runner.kinds.base import Target
from runner.kinds.registry import by_name
from runner.plan.shard import Shard, shard_of
from tests.runner.conftest import deleted, point_at, run_cli, successful_deletes
from tests.runner.log.test_checkpoint import sid
from tests.runner.test_run_faults import job

SHARDS = 4
DATASET = {
    "conversations": 24,
    "messages_per_conversation": 3,
    "participants_per_conversation": 2,
    "conversations_v2": 0,
    "configurations": 0,
    "stores": 0,
}
SPEC = """service: {service}
targets:
  - kind: messages
    where: {{conversations: all}}
  - kind: participants
    where: {{conversations: all}}
retry: {{base_delay: 0.05, max_delay: 0.5}}
"""


def list_gets(ledger: dict[str, Any], after: int) -> Counter[str]:
    """GETs answered since request ``after``: ``top`` (the conversations list) and
    ``children`` (a conversation's messages or participants)."""
    gets: Counter[str] = Counter()
    for r in ledger["requests"]:
        if r["method"] == "GET" and r["seq"] > after:
            gets["top" if r["path"].endswith("/Conversations") else "children"] += 1
    return gets


def last_seq(ledger: dict[str, Any]) -> int:
    return max((r["seq"] for r in ledger["requests"]), default=0)


def test_a_shard_skips_the_children_of_another_shards_conversations() -> None:
    """The admission tells discovery to skip a conversation another shard owns, and only those
    (and, as before, the ones this job deleted)."""
    sids = [sid("CH", n) for n in range(40)]
    shards = [Admission(shard=Shard(i, 3)) for i in range(3)]
    for n, conversation in enumerate(sids):
        listers = [i for i, a in enumerate(shards) if not a.skips_children_of(conversation)]
        assert listers == [shard_of(conversation, 3)]
        owner = shards[listers[0]]
        child = Target(by_name("message"), sid("IM", n), conversation)
        assert owner.admit(child) is Verdict.ADMITTED  # the lister is the shard that admits
    assert not Admission().skips_children_of(sids[0])


async def test_four_shards_list_each_conversations_children_once_between_them(
    start_emulator: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan --shard i/4` and `run --shard i/4` for every i send the top-level list pages at most
    four times, plus no more child-list GETs than one unsharded plan; the four runs together
    delete every selected target exactly once (ledger)."""
    async with start_emulator(preset="scale", dataset_args=DATASET) as emu:
        point_at(monkeypatch, emu.url)
        service = next(s["sid"] for s in await emu.resources("service") if not s["default"])
        spec = job(workdir, SPEC.format(service=service))
        expected = {("message", m["sid"]) for m in await emu.resources("message")}
        expected |= {("participant", p["sid"]) for p in await emu.resources("participant")}
        assert len(expected) == 24 * 5

        start = last_seq(await emu.ledger())
        assert await run_cli("plan", spec) == ExitCode.OK
        ledger = await emu.ledger()
        single = list_gets(ledger, start)
        assert single["top"] >= 2 and single["children"] == 24 * 2

        for command in ("plan", "run"):
            start = last_seq(ledger)
            for index in range(SHARDS):
                code = await run_cli(command, spec, "--shard", f"{index}/{SHARDS}")
                assert code == ExitCode.OK, (command, index)
            ledger = await emu.ledger()
            sharded = list_gets(ledger, start)
            assert sharded["top"] <= SHARDS * single["top"], command
            assert sharded["children"] <= single["children"], command

        assert deleted(ledger) == expected
        assert max(successful_deletes(ledger).values()) == 1
