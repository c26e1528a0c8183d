"""bulkops against a hostile server (issue 11): one case per misbehaviour of
``tests/runner/hostile_server.py``, each run through the real CLI in its own process.

For each case the first run meets the misbehaviour and must: print no traceback, exit with one of
the codes the case documents, end within its bound, delete (and send a DELETE for) nothing the
job does not select, and tell the truth — the checkpoint footer's exit is the process's, never 0
while a selected target still exists, and the report claims deleted only what the server
deleted. Then the server turns sane and the run is continued (``resume``, ``resume
--retry-failed`` after exit 1, or a fresh run after exit 0): every selected target ends deleted
exactly once, by the server's own record. docs/reliability.md ("Hostile server") has the table.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.runner.conftest import point_at, start_bulkops
from tests.runner.hostile_server import (
    ASYNC_KINDS,
    CONFIGURATION,
    MESSAGE,
    MISBEHAVIOURS,
    PARTICIPANT,
    STORE,
    STREAM_LIMIT,
    V1,
    V2,
    HostileServer,
    World,
    running,
)

TRACEBACK = "Traceback (most recent call last)"
# Every run ends within this: retry.max_elapsed (5 s) + operations.timeout (3 s) + start-up,
# with room for a loaded machine. A run still going then has hung (a pause obeyed, a page loop).
BOUND = 30.0
STREAM_CAP = 64 << 20  # a client that reads a body past this has no body cap worth the name

# Bounded retries and Operations: a misbehaviour that never stops is met within the BOUND.
COMMON = """retry: {max_attempts: 3, base_delay: 0.05, max_delay: 0.2, max_elapsed: 5}
operations: {poll_interval: 0.1, timeout: 3}
limits: {concurrency: 4}
"""
CUTOFF = "2024-01-01"
JOBS = {
    "messages": (
        f"  - kind: messages\n    where: {{conversations: all, created_before: {CUTOFF}}}\n"
    ),
    "participants": "  - kind: participants\n    where: {conversations: all}\n",
    "conversations_v1": "  - kind: conversations\n    where: {state: closed}\n",
    "conversations_v2": "  - kind: conversations\n    api: v2\n    where: {status: CLOSED}\n",
    "configurations": "  - kind: configurations\n    where: {all: true}\n",
    "memory_stores": "  - kind: memory_stores\n    where: {all: true}\n",
}


def selection(job: str, world: World) -> set[tuple[str, str]]:
    """(kind, id) of what ``job`` selects in the sane world."""
    if job == "messages":
        return {(MESSAGE, i.id) for i in world.live(MESSAGE) if i.created < CUTOFF}
    if job == "participants":
        return {(PARTICIPANT, i.id) for i in world.live(PARTICIPANT)}
    if job == "conversations_v1":
        return {(V1, i.id) for i in world.live(V1) if i.state == "closed"}
    if job == "conversations_v2":
        return {(V2, i.id) for i in world.live(V2) if i.state == "CLOSED"}
    kind = CONFIGURATION if job == "configurations" else STORE
    return {(kind, i.id) for i in world.live(kind)}


def delete_path(world: World, kind: str, id_: str) -> str:
    """The path a DELETE of (kind, id) takes."""
    if kind in (MESSAGE, PARTICIPANT):
        parent = world.items[(kind, id_)].parent
        segment = "Messages" if kind == MESSAGE else "Participants"
        return f"/v1/Conversations/{parent}/{segment}/{id_}"
    return {
        V1: "/v1/Conversations/",
        V2: "/v2/Conversations/",
        CONFIGURATION: "/v2/ControlPlane/Configurations/",
        STORE: "/v1/ControlPlane/Stores/",
    }[kind] + id_


Extra = Callable[[HostileServer, dict[str, int]], list[str]]


def streams_cut_short(server: HostileServer, _polls: dict[str, int]) -> list[str]:
    """Every big body was abandoned by the client before STREAM_CAP."""
    streams = server.record.streams
    if not streams:
        return ["the misbehaviour streamed no body (fixture problem)"]
    read = [s for s in streams if s.finished or s.sent > STREAM_CAP]
    return [
        f"the client read {s.sent >> 20} MB of a streamed body (of {STREAM_LIMIT >> 20} MB; "
        f"finished={s.finished}): no body cap" for s in read
    ]


def polls_floored(server: HostileServer, polls: dict[str, int]) -> list[str]:
    """No Operation was polled faster than 10 a second over its 3 s timeout (`Retry-After: 0`
    must not mean "poll at once, forever")."""
    return [
        f"operation {op} polled {n} times within operations.timeout (3 s): no poll floor"
        for op, n in polls.items()
        if n > 3 / 0.1 + 5
    ]


def each_delete_sent_once(server: HostileServer, _polls: dict[str, int]) -> list[str]:
    """No DELETE path was sent twice in the first run (a duplicate listing is one target)."""
    counts = Counter(r.path for r in server.record.deletes_sent())
    return [f"DELETE {p} sent {n} times" for p, n in counts.items() if n > 1]


def none_gone_unseen(doc: dict[str, Any]) -> list[str]:
    """No target is reported ``gone`` (absent at bulkops's first DELETE): every DELETE was
    applied by the server and its answer dropped, so each target's first DELETE was bulkops's
    own, and a 404 can only follow a retry bulkops knows it sent (``gone_after_request``). A
    client that silently re-sent the dropped DELETE would see 404 first and say ``gone``."""
    gone = [r["id"] for r in doc.get("targets", []) if r["outcome"] == "gone"]
    return [f"{len(gone)} targets reported gone after a dropped DELETE: a silent re-send"] if (
        gone) else []


@dataclass(frozen=True)
class Case:
    """A misbehaviour, the job that meets it and the exit codes the first run may end with."""

    misbehaviour: str
    job: str
    exits: frozenset[int]
    extra: Extra | None = None
    report_check: Callable[[dict[str, Any]], list[str]] | None = None


def case(
    name: str,
    job: str,
    *exits: int,
    extra: Extra | None = None,
    report_check: Callable[[dict[str, Any]], list[str]] | None = None,
) -> Any:
    """A pytest param of one case, id'd by its misbehaviour."""
    return pytest.param(Case(name, job, frozenset(exits), extra, report_check), id=name)


OK, FAILED, PAUSED = 0, 1, 9
CASES = [
    # Retry-After: a pause beyond retry.max_elapsed / retry.max_pause stops, resumable (exit 9).
    case("retry-after-400-digits", "conversations_v1", PAUSED),
    case("retry-after-1e9", "conversations_v1", PAUSED),
    case("retry-after-date-9999", "conversations_v2", PAUSED),
    case("retry-after-superscript", "conversations_v1", OK),
    case("retry-after-negative", "participants", OK),
    case("concurrent-requests-superscript", "messages", OK),
    case("429-forever-no-retry-after", "conversations_v1", FAILED, PAUSED),
    case("500-forever", "configurations", FAILED),
    # List items: every unreadable item is a discovery error, never a crash or a silent skip.
    case("item-without-sid", "conversations_v1", FAILED),
    case("item-without-id", "conversations_v2", FAILED),
    case("item-sid-number", "conversations_v1", FAILED),
    case("item-not-an-object", "configurations", FAILED),
    case("naive-date", "messages", OK, FAILED),
    case("date-not-a-string", "messages", FAILED),
    case("sid-path-traversal", "conversations_v1", FAILED),
    case("id-of-another-kind", "conversations_v2", FAILED),
    case("store-id-traversal", "memory_stores", FAILED),
    # Pagination: followed only on the list's own origin and path, once per page.
    case("next-url-userinfo", "conversations_v1", FAILED),
    case("next-url-port-99999", "conversations_v1", FAILED),
    case("next-url-other-origin", "conversations_v1", FAILED),
    case("next-url-other-path", "conversations_v1", FAILED),
    case("next-url-not-a-string", "conversations_v1", FAILED),
    case("repeated-page", "conversations_v1", FAILED),
    case("pagination-cycle", "conversations_v1", FAILED),
    case("next-token-repeating", "conversations_v2", FAILED),
    case("next-token-not-a-string", "configurations", FAILED),
    # Bodies: capped, and a list envelope that is not one is a discovery error.
    case("huge-body-streamed", "conversations_v1", FAILED, extra=streams_cut_short),
    case("body-json-list", "conversations_v1", FAILED),
    case("body-json-string", "conversations_v2", FAILED),
    case("body-json-number", "memory_stores", FAILED),
    case("meta-not-a-dict", "conversations_v1", FAILED),
    case("meta-key-missing", "configurations", FAILED),
    case("items-not-a-list", "conversations_v1", FAILED),
    case("v2-items-not-a-list", "conversations_v2", FAILED),
    case("html-2xx-list", "conversations_v1", FAILED),
    case("reset-mid-body", "conversations_v1", FAILED),
    # Below HTTP (the lean transport of DELETEs): a reply that is not one, a drop after acting.
    case("delete-garbage-status-line", "conversations_v1", FAILED),
    case("delete-applied-then-dropped", "participants", OK, report_check=none_gone_unseen),
    # Filters and order the server does not keep: re-checked locally.
    case("pages-out-of-date-order", "messages", OK),
    case("state-filter-ignored", "conversations_v1", OK),
    case("duplicates", "conversations_v1", OK, extra=each_delete_sent_once),
    # Operations: polls bounded, statuses and URLs read with suspicion.
    case("poll-retry-after-superscript", "conversations_v2", OK),
    case("poll-retry-after-zero", "configurations", FAILED, extra=polls_floored),
    case("operation-unknown-status", "memory_stores", FAILED),
    case("operation-status-not-a-string", "conversations_v2", FAILED),
    case("poll-body-not-an-object", "configurations", FAILED),
    case("status-url-other-origin", "conversations_v2", OK, FAILED),
    case("accepted-without-operation", "memory_stores", FAILED),
    case("operation-id-traversal", "configurations", FAILED),
    case("html-202", "conversations_v2", FAILED),
    # Replies a client must not trust the framing or the headers of.
    case("204-huge-body", "conversations_v1", OK, extra=streams_cut_short),
    case("headers-non-ascii", "conversations_v2", OK),
]


def test_every_misbehaviour_has_a_case() -> None:
    """The registry and the case list name the same misbehaviours, at least 30 of them."""
    named = [p.values[0].misbehaviour for p in CASES]
    assert len(named) == len(set(named))
    assert set(named) == set(MISBEHAVIOURS)
    assert len(named) >= 30


@dataclass
class Ended:
    """How one bulkops process ended."""

    code: int | None  # None: it did not end within the bound and was killed
    stderr: str
    seconds: float


async def bulkops(argv: list[str], workdir: Path) -> Ended:
    """Run ``bulkops ARGV`` as a process; kill it if it outlives BOUND."""
    err = workdir / "stderr.log"
    start = err.stat().st_size if err.exists() else 0
    began = time.monotonic()  # a figure, not a wait: the bound is move_on_after's
    process = await start_bulkops(argv, workdir)
    code: int | None = None
    async with process:
        with anyio.move_on_after(BOUND):
            code = await process.wait()
        if code is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()
    stderr = err.read_bytes()[start:].decode("utf-8", "replace")
    return Ended(code, stderr, time.monotonic() - began)


def raised(stderr: str) -> str:
    """The innermost exception a traceback on ``stderr`` names (its last ``Name: text`` line,
    inside an exception group too)."""
    lines = stderr[stderr.index(TRACEBACK):].splitlines()
    named = [
        line.strip(" |") for line in lines
        if re.match(r"^[\s|]*[A-Za-z_][\w.]*(Error|Exception|Group|Interrupt|Exit)\b", line)
    ]
    return (named[-1] if named else lines[-1].strip())[:160]


def footer_exit(log: Path) -> int | None:
    """The exit code the checkpoint's footer records; None without a footer."""
    last = json.loads(log.read_bytes().splitlines()[-1])
    return int(last["exit"]) if last.get("t") == "E" else None


def report(log: Path) -> dict[str, Any] | None:
    """The .report.json beside ``log``, if written."""
    path = log.with_suffix(".report.json")
    if not path.exists():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def newest_log(workdir: Path, besides: set[Path]) -> Path | None:
    """The checkpoint written by the last run (not one of ``besides``)."""
    new = sorted(set((workdir / "checkpoints").glob("*.jsonl")) - besides)
    return new[-1] if new else None


def judge_run(
    label: str,
    ended: Ended,
    log: Path | None,
    server: HostileServer,
    chosen: set[tuple[str, str]],
    exits: frozenset[int],
) -> list[str]:
    """What one run did wrong, judged by its process, its files and the server's record."""
    problems: list[str] = []
    if ended.code is None:
        problems.append(f"{label}: still running after {BOUND:g} s (killed)")
    elif ended.code not in exits:
        problems.append(f"{label}: exit {ended.code}, expected one of {sorted(exits)}")
    if TRACEBACK in ended.stderr:
        problems.append(f"{label}: traceback on stderr ({raised(ended.stderr)})")
    if log is None:
        return [*problems, f"{label}: no checkpoint written"]
    footer = footer_exit(log)
    live = server.world.everything()
    if ended.code is not None and footer != ended.code:
        problems.append(f"{label}: footer exit {footer} but the process exited {ended.code}")
    if footer == 0 and chosen & live:
        problems.append(
            f"{label}: footer exit 0 while {len(chosen & live)} selected targets were not deleted"
        )
    doc = report(log)
    if doc is None:
        if ended.code is not None:
            problems.append(f"{label}: no .report.json beside the checkpoint")
    else:
        if doc.get("exit_code") != footer:
            problems.append(f"{label}: report exit_code {doc.get('exit_code')}, footer {footer}")
        claimed = {(r["kind"], r["id"]) for r in doc["targets"] if r["outcome"] == "deleted"}
        lies = claimed - server.record.deleted()
        if lies:
            problems.append(f"{label}: the report claims {len(lies)} deleted that the server "
                            f"did not delete, e.g. {sorted(lies)[0]}")
    return problems


def judge_record(server: HostileServer, elsewhere: HostileServer, world0: World,
                 chosen: set[tuple[str, str]], auth: str) -> list[str]:
    """What the server's record shows went wrong, whatever bulkops says."""
    problems: list[str] = []
    outside = server.record.deleted() - chosen
    if outside:
        problems.append(f"deleted outside the selection: {sorted(outside)}")
    allowed = {delete_path(world0, kind, id_) for kind, id_ in chosen}
    strays = sorted({r.path for r in server.record.deletes_sent()} - allowed)
    if strays:
        problems.append(f"DELETE sent outside the selection: {strays[:3]}")
    if elsewhere.record.requests:
        first = elsewhere.record.requests[0]
        problems.append(
            f"{len(elsewhere.record.requests)} requests went to another origin, e.g. "
            f"{first.method} {first.path} (credentials sent: {first.authorization is not None})"
        )
    foreign = {r.authorization for r in server.record.requests} - {auth}
    if foreign:
        problems.append("a request carried other credentials than the configured ones")
    unknown = sorted({f"{r.method} {r.path}" for r in server.record.requests
                      if server.route(r.method, r.path)[0] == "unknown"})
    if unknown:
        problems.append(f"requests outside the API: {unknown[:3]}")
    return problems


def polls_per_operation(server: HostileServer) -> dict[str, int]:
    """How many times each Operation was polled."""
    return {op.id: op.polls for op in server.world.operations.values()}


@pytest.mark.parametrize("hostile", CASES)
async def test_hostile_server(
    hostile: Case, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against one misbehaviour the run prints no traceback, ends within its bound with a
    documented exit, deletes nothing outside its selection, and its footer and report tell the
    truth; once the server is sane, continuing it deletes every selected target exactly once."""
    server = HostileServer(MISBEHAVIOURS[hostile.misbehaviour]())
    elsewhere = HostileServer()
    world0 = World()
    chosen = selection(hostile.job, world0)
    secret = f"{os.environ['TWILIO_ACCOUNT_SID']}:{os.environ['TWILIO_AUTH_TOKEN']}"
    auth = "Basic " + base64.b64encode(secret.encode()).decode()
    spec = workdir / "hostile.yaml"
    spec.write_text(f"version: 1\nname: hostile\ntargets:\n{JOBS[hostile.job]}{COMMON}")
    async with running(elsewhere), running(server) as url:
        server.elsewhere = elsewhere.origin
        point_at(monkeypatch, url)

        first = await bulkops(["run", str(spec)], workdir)
        log = newest_log(workdir, set())
        problems = judge_run("first run", first, log, server, chosen, hostile.exits)
        problems += judge_record(server, elsewhere, world0, chosen, auth)
        if hostile.extra is not None:
            problems += hostile.extra(server, polls_per_operation(server))
        if hostile.report_check is not None:
            written = report(log) if log is not None else None
            if written is None:
                problems.append("first run: no report to judge")  # nothing judged is no pass
            else:
                problems += hostile.report_check(written)
        figures = {
            "case": hostile.misbehaviour,
            "exit": first.code,
            "seconds": round(first.seconds, 1),
            "requests": len(server.record.requests),
            "selected": len(chosen),
            "deleted": len(server.record.deleted() & chosen),
            "outside": len(server.record.deleted() - chosen),
            "max_polls": max(polls_per_operation(server).values(), default=0),
            "streamed_mb": max((s.sent >> 20 for s in server.record.streams), default=0),
        }

        server.behave(None)
        if log is None or first.code == 0:
            argv, label = ["run", str(spec)], "fresh run"
        else:
            retry = ["--retry-failed"] if first.code == 1 else []
            argv, label = ["resume", str(log), *retry], " ".join(["resume", *retry])
        rest = await bulkops(argv, workdir)
        rest_log = log if argv[0] == "resume" else newest_log(workdir, {log} if log else set())
        problems += judge_run(label, rest, rest_log, server, chosen, frozenset({0}))
        problems += judge_record(server, elsewhere, world0, chosen, auth)
        counts = Counter((d.kind, d.id) for d in server.record.deletions)
        missing = chosen - set(counts)
        if missing:
            problems.append(f"after the continuation {len(missing)} selected targets remain, "
                            f"e.g. {sorted(missing)[0]}")
        twice = sorted(k for k, n in counts.items() if n > 1)
        if twice:
            problems.append(f"deleted more than once: {twice[:3]}")
    figures["continued_with"] = label
    print(f"FIGURES {json.dumps(figures)}")  # pytest -s shows the first run's figures
    assert not problems, "\n".join(dict.fromkeys(problems))


@pytest.mark.parametrize("job", sorted(JOBS))
async def test_a_sane_server_is_purged_in_one_run(
    job: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no misbehaviour, each job deletes exactly its (non-empty, partial) selection in one
    run with exit 0: what the hostile cases find is the misbehaviour's doing, not the world's."""
    server, elsewhere, world0 = HostileServer(), HostileServer(), World()
    chosen = selection(job, world0)
    assert chosen and chosen < world0.everything()
    secret = f"{os.environ['TWILIO_ACCOUNT_SID']}:{os.environ['TWILIO_AUTH_TOKEN']}"
    auth = "Basic " + base64.b64encode(secret.encode()).decode()
    spec = workdir / "hostile.yaml"
    spec.write_text(f"version: 1\nname: hostile\ntargets:\n{JOBS[job]}{COMMON}")
    async with running(elsewhere), running(server) as url:
        server.elsewhere = elsewhere.origin
        point_at(monkeypatch, url)
        ended = await bulkops(["run", str(spec)], workdir)
        problems = judge_run("run", ended, newest_log(workdir, set()), server, chosen,
                             frozenset({0}))
        problems += judge_record(server, elsewhere, world0, chosen, auth)
    assert not problems, "\n".join(problems)
    assert Counter((d.kind, d.id) for d in server.record.deletions) == Counter(chosen)
    assert {k for k, _ in world0.everything()} >= {V1, MESSAGE, PARTICIPANT, *ASYNC_KINDS}
