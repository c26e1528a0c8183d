"""The checkpoint log's records: the only codec of a log line.

Everything that writes a line encodes it here, and everything that reads one decodes and
validates it here (:class:`UntrustedLine` on anything bulkops could not have written). The
format is record version 2, unchanged by this module's move out of ``checkpoint.py``: the same
run writes the same bytes (tests/fixtures/checkpoint-v2 pins it). State ``R`` (gone after a
request of an earlier process) was added to version 2 without a new version: every version-2
log still replays, and a bulkops from before it takes such a line for damage (refused, or
ignored as a torn last line), never for another state.
State ``H`` (held by a legal hold) was added the same way; it is the eighth state, the last the
replay's 3-bit state field has room for (:data:`STATE_BITS`, checked at import).

Layout (one JSON object per line)::

    {"t":"H", "v":1, "run":…, "job":…, "fp":…, "now":…, "times":{…}, …}   header, first line
    {"s":"Q", "k":"c2", "id":…}                                          requested (async kinds)
    {"s":"A", "k":"c2", "id":…, "op":…, "ts":12}              accepted: Operation id
    {"s":"D"|"G"|"R"|"F"|"C", "k":"m", "id":…, "c":CH…, "ts":13}   deleted/gone/gone after
                                                       request/failed/covered
    {"s":"H", "k":"m", "id":…, "c":CH…, "ts":13}     held by a legal hold: never sent
    {"s":"Q", "k":"c1", "id":…, "sv":"IS…"}      a target of one of a job's several Services
    {"t":"S", "sv":["IS…", …]}                   the Services a `service: all` job froze
    {"t":"P", "src":0, "sv":"IS…", "done":true}   target 0 listed that Service in full
    {"t":"P", "src":0, "n":120, "done":true}                 discovery progress of target 0
    {"t":"P", "src":1, "c":"CH…"}                 target 1 listed that conversation's children
    {"t":"P", "src":2, "c":"targets[2]", "n":0}   an erasure request listed: found n things
    {"t":"F", "src":2, "r":"targets[2]", "n":5, "sv":"IS…"}   … found 5 things in that Service
                                          (or the job's one), before any of them was deleted
    {"t":"E", "exit":0, "ts":20, "requests":…, "retries":…, "throttled":…}   footer: a run
                                                             (process) ended, with its traffic
    {"t":"E", …, "loop":"uvloop"}                 … and the event loop that process ran on
    {"t":"L", "ts":14, "p":{"conversations":198.5}, "cap":40}   the pace learned so far: each
                          product's limit found (requests/s), the account's lowered in-flight cap

``ts`` is whole seconds since the header's ``started``, which keeps lines short. A failed line also
carries ``e`` (Twilio's code, or the HTTP status) and ``m`` (Twilio's message, truncated).

A pace line (``L``, issue 14 §6) only speeds a resume's start: one that is not valid is
ignored with a warning (:func:`decode_pace`), never taken for damage. A bulkops from before it
takes an ``L`` line for damage (refused, or ignored as a torn last line).

A target's kind is its log code (``k``) in a line, and a 3-bit index in the packed states of a
replay: :func:`kind_code`, :func:`kind_of`, :func:`kind_index` and :func:`kind_at` are the one
place that maps kinds to both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from xxhash import xxh3_128_intdigest as _xxh3_128

from runner.errors import UntrustedLine
from runner.kinds.base import Product, ResourceKind, Target
from runner.kinds.ids import (
    CONVERSATION_SID,
    SERVICE_SID,
    is_operation_id,
    show_value,
    validate_id,
)
from runner.kinds.registry import KINDS

RECORD_VERSION = 2


class State(StrEnum):
    """A target's state in the log. The last line about a target wins."""

    REQUESTED = "Q"
    ACCEPTED = "A"
    DELETED = "D"
    GONE = "G"
    FAILED = "F"
    COVERED = "C"  # removed by the deletion of its conversation, which the same job deletes
    # Absent (404) when the DELETE was sent again: an earlier process of the run had requested
    # it and stopped before it logged the answer (or logged a failure), or an earlier attempt
    # met a fault (timeout, reset, 5xx) after which the server may have acted — so most likely
    # this run deleted it. GONE is absent at the first DELETE the run sent for it.
    GONE_AFTER_REQUEST = "R"
    # Under a legal hold (issue 13 §1): found but never sent, or held again just before its
    # DELETE; final for the run (a resume does not send it), never listed in a report.
    HELD = "H"

    @property
    def is_final(self) -> bool:
        """Whether nothing more will be done for a target in this state."""
        return self in FINAL_STATES

    @property
    def is_absent(self) -> bool:
        """Whether the target is known to no longer exist (deleted, or found absent)."""
        return self in ABSENT_STATES


# A target known to no longer exist: deleted, or answered 404 whoever removed it. A v1
# conversation in one of these states covers its messages and participants.
ABSENT_STATES = frozenset({State.DELETED, State.GONE, State.GONE_AFTER_REQUEST})
FINAL_STATES = ABSENT_STATES | {State.FAILED, State.COVERED, State.HELD}
# States a target's own line may be without a requested line before it (it was never sent).
UNSENT_STATES = frozenset({State.COVERED, State.HELD})


@dataclass(frozen=True, slots=True)
class Header:
    """What a resume needs to reproduce the run: the job, its fingerprint and its frozen times."""

    run_id: str
    job: str
    fingerprint: str
    frozen_now: str
    times: dict[str, str]
    spec_path: str
    config_path: str | None
    version: str
    started: str
    canonical_spec: dict[str, Any] = field(default_factory=dict)
    shard: str | None = None  # "i/n" when the run is one shard of a job
    plan: str | None = None  # the plan file an `apply` run deletes (relative to the log)
    plan_sha256: str | None = None  # ... and its digest, checked again on resume
    # The API origin of each product the run began with ({"conversations": url, ...}): a resume
    # must name the same ones. None in logs written before it was recorded.
    hosts: dict[str, str] | None = None
    # The Account SID the run deletes from (not a secret), for the report; None in older logs.
    account: str | None = None

    def to_record(self) -> dict[str, Any]:
        """The header line's JSON object."""
        record = {
            "t": "H",
            "v": RECORD_VERSION,
            "run": self.run_id,
            "job": self.job,
            "fp": self.fingerprint,
            "now": self.frozen_now,
            "times": self.times,
            "spec": self.spec_path,
            "config": self.config_path,
            "bulkops": self.version,
            "started": self.started,
            "canon": self.canonical_spec,
            "shard": self.shard,
            "plan": self.plan,
            "plan_sha256": self.plan_sha256,
            "hosts": self.hosts,
        }
        if self.account is not None:
            # Left out when unknown, so a header read from an older log is written back as it was.
            record["account"] = self.account
        return record

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Header:
        """Rebuild a header from its line; KeyError/TypeError/ValueError mean the line is not a
        (usable) header."""
        for name in ("started", "now"):
            if not isinstance(rec[name], str):
                raise ValueError(f"header field {name!r} is not a timestamp")
            datetime.fromisoformat(rec[name])  # ValueError names the bad value
        return cls(
            run_id=str(rec["run"]),
            job=str(rec["job"]),
            fingerprint=str(rec["fp"]),
            frozen_now=str(rec["now"]),
            times=dict(rec["times"]),
            spec_path=str(rec["spec"]),
            config_path=rec.get("config"),
            version=str(rec["bulkops"]),
            started=str(rec["started"]),
            canonical_spec=dict(rec.get("canon") or {}),
            shard=None if rec.get("shard") is None else str(rec["shard"]),
            plan=None if rec.get("plan") is None else str(rec["plan"]),
            plan_sha256=None if rec.get("plan_sha256") is None else str(rec["plan_sha256"]),
            hosts=_hosts(rec.get("hosts")),
            account=_account(rec.get("account")),
        )

    @property
    def started_at(self) -> datetime:
        """When the run began (UTC)."""
        return datetime.fromisoformat(self.started)


def _account(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("header field 'account' is not an Account SID")
    return validate_id("account", value)


def _hosts(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("header field 'hosts' is not a mapping of product to URL")
    return dict(value)


@dataclass(slots=True)
class TargetRecord:
    """One target's state line, decoded."""

    target: Target
    state: State
    operation: str | None = None
    code: int | None = None
    message: str | None = None
    ts: int | None = None
    generation: int = 0  # deliberate retries of a failed target; part of its Idempotency-Key


def target_record(
    target: Target,
    state: State,
    *,
    ts: int | None = None,
    operation: str | None = None,
    code: int | None = None,
    message: str | None = None,
    generation: int = 0,
    with_parent: bool = True,
) -> dict[str, Any]:
    """The JSON object of one target's state line.

    ``with_parent=False`` leaves the conversation (and Service) out: for a target whose
    *requested* line, which names them, is already in the log, the replay takes them from
    there. The later lines of a target are then the same for every conversation and group into
    one line.
    """
    rec: dict[str, Any] = {"s": state.value, "k": target.kind.code, "id": target.id}
    if target.parent and with_parent:
        rec["c"] = target.parent
    if target.service and with_parent:
        rec["sv"] = target.service  # a job of several Services: its delete path needs it
    if ts is not None:
        rec["ts"] = ts
    if operation:
        rec["op"] = operation
    if code is not None:
        rec["e"] = code
    if message:
        # Remote text may hold lone surrogates (json.loads accepts them) or line breaks.
        rec["m"] = message.encode("utf-8", "replace").decode("utf-8")
    if generation:
        rec["g"] = generation
    return rec


def key_hash(key: str) -> int:
    """A 90-bit digest of a target key: the top 90 bits of its XXH3-128 (issue 16 §3).

    A million of them take a fraction of the memory the keys would, and a collision (which
    would skip a target) stays beyond any real chance: about 1e-15 for ten million targets.
    90 bits because any int of 61 to 90 bits takes the same 36 bytes (three 30-bit digits), 8
    fewer than a 128-bit one.

    The same key gives the same digest in every process, which a snapshot of a replay
    (:mod:`runner.log.snapshot`) needs: its tables are keyed by these digests. Until it, the
    digest was Python's own per-process keyed string hash, and digests never left a process,
    so a log written before replays exactly as it did (nothing on disk holds a digest). The
    hash is no longer keyed: a key that collides with another on purpose could only make a
    resume skip a target (never send a DELETE the spec does not select), which a server that
    lists the targets can do anyway by not listing it; and XXH3 is as fast as the two SipHash
    values it replaces.
    """
    return _xxh3_128(key.encode()) >> 38


# -- kinds: the one place the log maps a kind to its code and to its index ----------------------

KIND_BITS = 3  # a replay packs a target's kind into 3 bits of its state int


def check_kinds_fit(count: int) -> None:
    """Refuse (at import) more kinds than the 3-bit kind index of a replay's packed state holds:
    a ninth kind would silently share an index with the first."""
    if count > 1 << KIND_BITS:
        raise RuntimeError(
            f"{count} resource kinds do not fit the checkpoint's {KIND_BITS}-bit kind index "
            f"(at most {1 << KIND_BITS}); widen KIND_BITS in runner/log/records.py (and the "
            "state packing that uses it)"
        )


_KINDS = {k.log_index: k for k in KINDS}
check_kinds_fit(max(_KINDS) + 1)
_KIND_BY_CODE = {k.code: k for k in KINDS}


def kind_code(resource: ResourceKind) -> str:
    """The short code (``k``) of a kind in a log line."""
    return resource.code


def kind_of(code: object) -> ResourceKind:
    """The kind a line's code names (KeyError for a code bulkops never wrote)."""
    return _KIND_BY_CODE[code]  # type: ignore[index]


def is_kind_code(code: object) -> bool:
    """Whether ``code`` is a kind's code."""
    return isinstance(code, str) and code in _KIND_BY_CODE


def kind_index(resource: ResourceKind) -> int:
    """The kind's index in a replay's packed state (below ``1 << KIND_BITS``)."""
    return resource.log_index


def kind_at(index: int) -> ResourceKind:
    """The kind at a packed state's index."""
    return _KINDS[index]


def target_key(resource: ResourceKind, id_: str) -> str:
    """A target's key as the log's digests hash it (``code:id``, the same as ``Target.key``)."""
    return f"{resource.code}:{id_}"


STATE_BITS = 3  # a replay packs a target's state into the low 3 bits of its state int
STATES = list(State)
if len(STATES) > 1 << STATE_BITS:  # a ninth state would share an index with the first
    raise RuntimeError(f"{len(STATES)} log states do not fit the replay's {STATE_BITS}-bit field")
STATE_INDEX = {s: i for i, s in enumerate(STATES)}
STATE_BY_VALUE = {s.value: s for s in State}


def pack(ts: int, resource: ResourceKind, state: State) -> int:
    """A target's latest state as a replay keeps it: ``ts``, kind index, state index."""
    return (ts << 6) | (resource.log_index << KIND_BITS) | STATE_INDEX[state]


# -- other lines -------------------------------------------------------------------------------

# Traffic figures a footer carries: requests sent, retries (after a fault or a 429), and 429s.
TRAFFIC = ("requests", "retries", "throttled")


def progress_record(
    source: int, found: int, *, done: bool = False, error: str | None = None
) -> dict[str, Any]:
    """A discovery progress line: ``found`` targets of source ``source`` so far, or in all."""
    rec: dict[str, Any] = {"t": "P", "src": source, "n": found}
    if error is not None:
        rec["error"] = error[:200]
    if done:
        rec["done"] = True
    return rec


def children_listed_record(
    source: int, conversation: str, *, found: int | None = None
) -> dict[str, Any]:
    """Source ``source`` listed that conversation's children in full; or, with ``found``, that
    request of a selector (named by its position in the spec) found that many things."""
    rec: dict[str, Any] = {"t": "P", "src": source, "c": conversation}
    if found is not None:
        rec["n"] = found
    return rec


# A request's position in the spec, the only way the log names one (never its person).
REQUEST_MATCH = re.compile(r"targets\[[0-9]{1,6}\](?:\.from_file line [0-9]{1,12})?").fullmatch


def request_found_record(
    source: int, request: str, found: int, service: str | None
) -> dict[str, Any]:
    """Erasure request ``request`` (by position) of source ``source`` found ``found`` things in
    ``service`` (None: the job's one). Written before any of them is deleted, so that a resume
    that looks again once some are gone still counts them (and never calls the request found
    nowhere); a new type, which an older bulkops refuses rather than misreads."""
    rec: dict[str, Any] = {"t": "F", "src": source, "r": request, "n": found}
    if service is not None:
        rec["sv"] = service
    return rec


@dataclass(frozen=True, slots=True)
class RequestFound:
    """A request-found line, decoded."""

    request: str  # its position: targets[2], targets[2].from_file line 7
    service: str | None
    found: int


def decode_request_found(rec: dict[str, Any]) -> RequestFound:
    """A request-found line's object (UntrustedLine/KeyError/ValueError on a malformed one)."""
    request, found = rec["r"], rec["n"]
    if type(request) is not str or REQUEST_MATCH(request) is None:
        raise UntrustedLine("'r' is not an erasure request's position (targets[N]…)")
    if type(found) is not int or found < 0:
        raise ValueError("'n' is not a count")
    service = None if rec.get("sv") is None else checked_service(rec["sv"])
    return RequestFound(request, service, found)


def service_listed_record(source: int, service: str) -> dict[str, Any]:
    """Source ``source`` listed what it selects in that Service in full (after the lines of
    what it found there, so it implies them): a resume does not list that Service again."""
    return {"t": "P", "src": source, "sv": service, "done": True}


# More Services than any account has: a larger count is not one bulkops wrote.
MAX_SERVICES_REJECTED = 1_000_000


def services_record(services: list[str], rejected: int = 0) -> dict[str, Any]:
    """The Services a ``service: all`` job found when it began: a resume drives those, and a
    Service created since is not touched. ``rejected`` counts the Services the listing left out
    (an invalid SID): a resume does not list them again, so it must still say they were."""
    rec: dict[str, Any] = {"t": "S", "sv": services}
    if rejected:
        rec["rj"] = rejected
    return rec


def decode_services(rec: dict[str, Any]) -> tuple[str, ...]:
    """The Services of a services line, each checked as a Service SID (UntrustedLine if not)."""
    services = rec["sv"]
    if not isinstance(services, list):
        raise ValueError("'sv' is not a list")
    return tuple(checked_service(one) for one in services)


def decode_services_rejected(rec: dict[str, Any]) -> int:
    """How many Services the listing of a services line left out (0 in logs written before
    the count was recorded)."""
    rejected = rec.get("rj", 0)
    if type(rejected) is not int or not 0 <= rejected <= MAX_SERVICES_REJECTED:
        raise UntrustedLine(f"{show_value(rejected)} is not a count of Services left out")
    return rejected


def checked_service(value: object) -> str:
    """``value`` when it is a Service SID: it goes into the path of a listing or a DELETE."""
    if type(value) is not str or SERVICE_MATCH(value) is None:
        raise UntrustedLine(
            f"{show_value(value)} is not a Service SID (IS followed by 32 hex digits)"
        )
    return value


def footer_record(
    exit_code: int,
    ts: int,
    *,
    requests: int | None = None,
    retries: int | None = None,
    throttled: int | None = None,
    loop: str | None = None,
) -> dict[str, Any]:
    """The footer: a process that drove the log ended, with its exit code and its traffic (a
    second footer of the same process leaves the traffic out, so that it is counted once), and
    the event loop it ran on (one of :data:`LOOPS`)."""
    rec: dict[str, Any] = {"t": "E", "exit": exit_code, "ts": ts}
    for name, value in (("requests", requests), ("retries", retries), ("throttled", throttled)):
        if value is not None:
            rec[name] = value
    if loop is not None:
        rec["loop"] = loop
    return rec


# -- pace lines (issue 14 §6) -------------------------------------------------------------------

# Bounds of what a pace line may say: beyond them it is not a pace bulkops learned.
PACE_MAX_RATE = 100_000.0  # requests/s, as a configured `rate` may be at most
PACE_MAX_IN_FLIGHT = 1000  # as a configured `concurrency` may be at most
_PRODUCTS = {p.value: p for p in Product}


@dataclass(frozen=True, slots=True)
class Pace:
    """A pace line, decoded: what a process had learned of the server's limits when it wrote
    it (``ts``: seconds since the run began)."""

    ts: int
    rates: dict[Product, float]  # each product's limit found, requests/s
    in_flight: int | None = None  # the account's in-flight cap, when 429s had lowered it


def pace_record(ts: int, rates: dict[Product, float], in_flight: int | None) -> dict[str, Any]:
    """The pace line of what a run has learned by ``ts`` (see :class:`Pace`)."""
    learned = {product.value: round(rate, 1) for product, rate in rates.items()}
    rec: dict[str, Any] = {"t": "L", "ts": ts, "p": learned}
    if in_flight is not None:
        rec["cap"] = in_flight
    return rec


def decode_pace(rec: dict[str, Any]) -> Pace:
    """A pace line's object as a :class:`Pace` (ValueError/KeyError/TypeError on one bulkops
    could not have written: a product it does not know, a rate or cap out of bounds)."""
    ts = rec["ts"]
    if type(ts) is not int or ts < 0:
        raise ValueError("'ts' is not a whole number of seconds")
    products = rec["p"]
    if not isinstance(products, dict):
        raise TypeError("'p' is not a mapping of product to rate")
    rates: dict[Product, float] = {}
    for name, rate in products.items():
        if name not in _PRODUCTS:
            raise ValueError(f"unknown product {show_value(name)}")
        if type(rate) not in (int, float) or not (
            math.isfinite(rate) and 1.0 <= rate <= PACE_MAX_RATE
        ):
            raise ValueError(f"the rate of {name} is not a number from 1 to {PACE_MAX_RATE:g}")
        rates[_PRODUCTS[name]] = float(rate)
    cap = rec.get("cap")
    if cap is not None and (type(cap) is not int or not 1 <= cap <= PACE_MAX_IN_FLIGHT):
        raise ValueError(f"'cap' is not a whole number from 1 to {PACE_MAX_IN_FLIGHT}")
    return Pace(ts, rates, cap)


# The event loops a footer may name (runner.app.loop); a footer's ``loop`` is read as one of
# these or not at all, so a report never repeats a string from a log unchecked.
LOOPS = ("asyncio", "uvloop")


# How every log begins (the header's first key, as :meth:`Header.to_record` orders it): a file
# that does not is not a bulkops log.
HEADER_START = b'{"t":"H"'


def decode_header(raw: bytes) -> Header:
    """The header of a log's first line (ValueError/KeyError/TypeError if it is not one)."""
    rec = orjson.loads(raw)
    if not isinstance(rec, dict):
        raise TypeError("not a JSON object")
    return Header.from_record(rec)


@dataclass(frozen=True, slots=True)
class Progress:
    """A discovery progress line, decoded."""

    source: int  # the index of the spec target being listed
    found: int = 0
    done: bool = False
    listed: str | None = None  # a conversation whose children the source listed in full
    service: str | None = None  # a Service the source listed in full
    settled: int | None = None  # ``listed`` is a selector's request, which found this many


def decode_progress(rec: dict[str, Any]) -> Progress:
    """A progress line's object as a :class:`Progress` (KeyError/ValueError/TypeError on a
    malformed one)."""
    if "c" in rec:
        settled = int(rec["n"]) if "n" in rec else None
        return Progress(int(rec["src"]), listed=str(rec["c"]), settled=settled)
    if "sv" in rec:
        return Progress(int(rec["src"]), service=checked_service(rec["sv"]))
    return Progress(int(rec["src"]), int(rec.get("n", 0)), bool(rec.get("done")))


@dataclass(frozen=True, slots=True)
class Footer:
    """A footer line, decoded: how one process that drove the log ended."""

    exit_code: int
    traffic: dict[str, int]  # each name of TRAFFIC: that process's own figure
    ts: int | None = None  # when that process ended (seconds since the run began)
    loop: str | None = None  # the event loop it ran on (footers before it was recorded: None)


def decode_footer_object(rec: dict[str, Any]) -> Footer:
    """A footer line's object as a :class:`Footer` (KeyError/ValueError/TypeError on a
    malformed one)."""
    ts = rec.get("ts")
    loop = rec.get("loop")
    if loop is not None and loop not in LOOPS:
        raise ValueError(f"'loop' is not one of {', '.join(LOOPS)}")
    return Footer(
        int(rec["exit"]),
        {name: int(rec.get(name, 0)) for name in TRAFFIC},
        None if ts is None else int(ts),
        loop,
    )


def decode_footer(raw: bytes) -> int | None:
    """The exit code of a footer line; None for any other line (ValueError/KeyError/TypeError
    if it is a footer that is not well-formed)."""
    rec = orjson.loads(raw)
    if isinstance(rec, dict) and rec.get("t") == "E":
        return int(rec["exit"])
    return None


def decode_object(raw: bytes) -> dict[str, Any]:
    """A line's JSON object (ValueError if the line is not one)."""
    rec = orjson.loads(raw)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    return rec


def is_target_object(rec: object) -> bool:
    """Whether a line's object is a well-formed state line (one target or a group)."""
    return (
        isinstance(rec, dict)
        and isinstance(rec.get("s"), str)
        and rec["s"] in STATE_BY_VALUE
        and is_kind_code(rec.get("k"))
        and (isinstance(rec.get("ids"), list) or "id" in rec)
    )


def line_ids(rec: dict[str, Any]) -> list[Any]:
    """The ids a state line names (a grouped line names several)."""
    ids: list[Any] = rec["ids"] if "ids" in rec else [rec["id"]]
    return ids


# -- target lines ------------------------------------------------------------------------------


def decode_targets(rec: dict[str, Any]) -> list[TargetRecord]:
    """The TargetRecords of one state line (a grouped line holds several)."""
    ids = rec.get("ids")
    if ids is None:
        return [decode_target(rec)]
    if not isinstance(ids, list) or not ids:
        raise ValueError("'ids' is not a non-empty list")
    return [decode_target({**rec, "id": one}) for one in ids]


def decode_target(rec: dict[str, Any]) -> TargetRecord:
    """A state line's object as a TargetRecord (KeyError/ValueError on a malformed one).

    Every ID is checked against its kind's pattern here, as it is read: a log is a file anyone
    with write access can edit, and what it names goes into a DELETE's path on resume. An ID
    that is not one (``../../v2/ControlPlane/…``) raises :class:`UntrustedLine`, which no torn
    tail can produce, so the log is refused wherever the line is.
    """
    resource = kind_of(rec["k"])
    state = State(rec["s"])
    parent = checked_parent(resource, rec.get("c"), state)
    service = None if rec.get("sv") is None else checked_service(rec["sv"])
    check_ids(resource, (rec["id"],))
    operation = rec.get("op")
    if operation is not None and (not is_operation_id(operation)):
        raise UntrustedLine(
            f"operation id {show_value(operation)} is not an Operation id (letters, digits, "
            "'_' and '-', at most 512)"
        )
    target = Target(resource, rec["id"], parent, service)
    return TargetRecord(
        target=target,
        state=state,
        operation=operation,
        code=rec.get("e"),
        message=rec.get("m"),
        ts=rec.get("ts"),
        generation=int(rec.get("g", 0)),
    )


# Operation ids have no published pattern (Memory: a string of at most 512); these characters
# cover every form seen (proc_job_…, mem_op_…) and none can change the path of a poll.
_ID_MATCH = {k: k.pattern.regex.fullmatch for k in KINDS}
# A grouped line's ids are checked in one regex call over the ids joined by newlines (no valid
# ID holds one, which the count of newlines proves): a replay of a million targets checks them
# at a fraction of the cost of a call per ID.
_IDS_MATCH = {
    k: re.compile(f"(?:{k.pattern.regex.pattern}\n)*{k.pattern.regex.pattern}").fullmatch
    for k in KINDS
}
CONVERSATION_MATCH = CONVERSATION_SID.regex.fullmatch
SERVICE_MATCH = SERVICE_SID.regex.fullmatch
DRIVEN = frozenset({State.REQUESTED, State.ACCEPTED, State.FAILED})  # what a resume may send


def check_ids(resource: ResourceKind, ids: list[object] | tuple[object, ...]) -> None:
    try:
        joined = "\n".join(ids)  # type: ignore[arg-type]  # a TypeError is a non-text ID
        if joined.count("\n") == len(ids) - 1 and _IDS_MATCH[resource](joined) is not None:
            return
    except TypeError:
        pass
    match = _ID_MATCH[resource]
    for one in ids:
        if type(one) is not str or match(one) is None:
            pattern = resource.pattern
            raise UntrustedLine(f"{show_value(one)} is not a {pattern.name} ({pattern.shape})")
    raise UntrustedLine("an ID holds a line break")


def checked_parent(resource: ResourceKind, parent: object, state: State) -> str | None:
    """The conversation a line names: a Conversation SID on message and participant lines
    (required on their *requested* lines, which every later line relies on), nothing on others
    (a parent would move a target to another shard)."""
    if not resource.has_parent:
        if parent is not None:
            raise UntrustedLine(f"a {resource.name} line names a conversation ('c')")
        return None
    if parent is None:
        if state is State.REQUESTED:
            raise UntrustedLine(f"a requested {resource.name} line names no conversation")
        return None
    if type(parent) is not str or CONVERSATION_MATCH(parent) is None:
        raise UntrustedLine(
            f"{show_value(parent)} is not a Conversation SID (CH followed by 32 hex digits)"
        )
    return parent


# -- grouping ----------------------------------------------------------------------------------

GROUPABLE = frozenset({"s", "k", "id", "c", "sv", "ts"})
# At most this many IDs share a line (about 4 MB), so every line bulkops writes stays far below
# what a replay reads as one line (replay.MAX_LINE).
GROUP_MAX_IDS = 100_000


def group_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold plain records that differ only in ``id`` into one line with ``ids``.

    A page of messages selected together, or the deletions finished in the same second, then
    cost one line and about 40 bytes per target instead of about 100. Records of one batch are
    written together, so a record may join a line that began earlier in the batch — unless a
    target appears twice in the batch, where moving its later line up could reorder its states.
    """
    keys = [_target_key(r) for r in records]
    named = [k for k in keys if k is not None]
    anywhere = len(set(named)) == len(named)
    lines: list[dict[str, Any]] = []
    open_groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        key = (
            (record["s"], record["k"], record.get("c"), record.get("sv"), record.get("ts"))
            if record.keys() <= GROUPABLE and "s" in record and "id" in record
            else None
        )
        line = open_groups.get(key) if key is not None else None
        if line is not None:
            if "ids" not in line:
                line["ids"] = [line.pop("id")]
            line["ids"].append(record["id"])
            if key is not None and len(line["ids"]) >= GROUP_MAX_IDS:
                del open_groups[key]
            continue
        line = dict(record)
        lines.append(line)
        if not anywhere:
            open_groups.clear()  # only the line just written may be extended
        if key is not None:
            open_groups[key] = line
    return lines


def _target_key(record: dict[str, Any]) -> tuple[Any, Any] | None:
    return (record["k"], record["id"]) if "s" in record and "id" in record else None


def encode(record: dict[str, Any]) -> bytes:
    """One record as its line's bytes."""
    return orjson.dumps(record) + b"\n"
