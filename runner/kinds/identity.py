"""Erasure of one person (``kind: identity``): their messages, participants and User, everywhere.

A request names a person by chat identities and SMS/WhatsApp addresses, written in the spec or
one per row of a ``from_file`` list of requests. It deletes nothing of its own: it is a
:class:`~runner.kinds.selector.Selector` whose listing emits targets of the message, participant
and user kinds, so the log, limits, report and resume are theirs. For each request, in the job's
Service (in a job of several, ``service: all`` or a list, in each of them at once, each target
marked with the Service it was found in; a request is found nowhere only when no Service has it):

1. ``GET …/ParticipantConversations?Identity=…`` (and ``?Address=…``): the conversations the
   person takes part in, and their participant SID in each;
2. in each of those conversations, the messages whose ``author`` is one of the request's
   identities or addresses;
3. ``GET …/Users/{identity}``: the Conversation User of each identity.

Identities and addresses are personal data. They live in the spec (or its requests file) and in
memory while listing, nowhere else: the canonical spec a checkpoint records keeps only how many
there are, errors and log lines name a request by its position (``targets[2]``,
``targets[2].from_file line 7``), and nothing of a list item but its SIDs is kept. A request
found nowhere is logged ``erasure_request_not_found`` by position, not counted as a failure.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import structlog
from anyio.abc import ObjectReceiveStream
from pydantic import field_serializer, model_validator

from runner.errors import AuthError, BadListing, RemoteError, SpecError, UntrustedFile
from runner.files import open_regular_stream
from runner.kinds import messages, participants, users
from runner.kinds.base import ResourceKind, Target, Windows
from runner.kinds.ids import CONVERSATION_SID
from runner.kinds.listing import ListContext, Listing, Rejections, belongs, item_id, listed_id
from runner.kinds.selector import Selector
from runner.kinds.spec_model import ManifestInfo, SpecTarget, Text, problems_error
from runner.kinds.v1 import V1_PAGE, conversations_prefix, v1_prefix

__all__ = ["PARTS", "SELECTOR", "IdentityTarget", "ListIdentity", "Request", "read_requests"]

log = structlog.get_logger("bulkops.discovery")

Part = Literal["messages", "participants", "user"]
PARTS: tuple[Part, ...] = ("messages", "participants", "user")
PAGE = 50  # the spec caps PageSize at 50 on ParticipantConversations
# E.164 (a plus, a country code, up to 15 digits), as an SMS participant's address, or behind
# the channel prefix of a WhatsApp one.
ADDRESS = re.compile(r"(?:whatsapp:)?\+[1-9][0-9]{6,14}")
MAX_IDENTITY = 256  # Twilio's limit on a chat identity's length
MAX_PROBLEMS = 20
MAX_LINE_BYTES = 64 * 1024
_ADDRESS_HELP = (
    "is not an SMS or WhatsApp address: write it in E.164, +<country code><number> "
    "(+15551234567), or whatsapp:+15551234567"
)


def identity_problem(value: object) -> str | None:
    """What is wrong with a chat identity (never quoting it: it is personal data), or None."""
    if not isinstance(value, str) or not value.strip():
        return "is not a chat identity: write the identity as text"
    if len(value) > MAX_IDENTITY:
        return f"is longer than {MAX_IDENTITY} characters, Twilio's limit on an identity"
    if value.strip() != value:
        return "has spaces around it: remove them"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "holds a control character: an identity is one line of text"
    return None


def address_problem(value: object) -> str | None:
    """What is wrong with an SMS/WhatsApp address (never quoting it), or None."""
    if not isinstance(value, str) or ADDRESS.fullmatch(value) is None:
        return _ADDRESS_HELP
    return None


@dataclass(frozen=True, slots=True, repr=False)
class Request:
    """One person to erase: chat identities and addresses, named by ``position`` only."""

    position: str  # targets[2], or targets[2].from_file line 7: never the person
    identities: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<request {self.position}>"  # a request's contents are personal data

    @property
    def authors(self) -> frozenset[str]:
        """The ``author`` values of the person's messages."""
        return frozenset((*self.identities, *self.addresses))


# --- the spec ----------------------------------------------------------------------------------


class IdentityTarget(SpecTarget):
    """Everything of one person: by chat ``identities`` and ``addresses``, or a requests file."""

    misplaced: ClassVar[Mapping[str, str]] = {
        "identity": "write identities: [...] (a list)",
        "address": "write addresses: [...] (a list)",
        "parts": "write delete: [messages, participants, user]",
    }

    kind: Literal["identity"]
    # Anything, so that a `where:` here is refused for what it is (no filter selects a person),
    # not key by key against a filter with no keys.
    where: Any = None
    identities: tuple[Text, ...] | None = None
    addresses: tuple[Text, ...] | None = None
    delete: tuple[Text, ...] = PARTS

    @field_serializer("identities", "addresses")
    def _count(self, values: tuple[str, ...] | None) -> int | None:
        # The canonical spec goes into the checkpoint: how many, never who.
        return None if values is None else len(values)

    @property
    def parts(self) -> tuple[Part, ...]:
        """What to delete, in the order of :data:`PARTS`."""
        return tuple(p for p in PARTS if p in self.delete)

    @model_validator(mode="after")
    def _check(self) -> IdentityTarget:
        problems: list[tuple[str, str]] = []
        for name in ("ids", "where", "api"):
            if getattr(self, name) is not None:
                problems.append(
                    (
                        name,
                        "not allowed here: an identity target names a person with "
                        "identities and addresses, or a requests file (from_file)",
                    )
                )
        given = self.identities is not None or self.addresses is not None
        if not given and self.from_file is None:
            problems.append(
                (
                    "",
                    "names nobody: give identities and/or addresses, or from_file "
                    "(a list of requests)",
                )
            )
        if given and self.from_file is not None:
            problems.append(
                (
                    "",
                    "gives from_file and identities/addresses: one request in the spec, "
                    "or many in the file, not both",
                )
            )
        for name in ("identities", "addresses"):
            values: tuple[str, ...] | None = getattr(self, name)
            if values is not None and not values:
                problems.append((name, f"is empty: list at least one, or leave {name} out"))
        for index, value in enumerate(self.identities or ()):
            if (problem := identity_problem(value)) is not None:
                problems.append((f"identities[{index}]", problem))
        for index, value in enumerate(self.addresses or ()):
            if (problem := address_problem(value)) is not None:
                problems.append((f"addresses[{index}]", problem))
        if not self.delete:
            problems.append(("delete", f"is empty: name what to delete, of {', '.join(PARTS)}"))
        for index, part in enumerate(self.delete):
            if part not in PARTS:
                problems.append((f"delete[{index}]", f"{part!r} is not one of {', '.join(PARTS)}"))
        if self.from_file is not None and not self.from_file.strip():
            problems.append(("from_file", "is empty: give the path of a .csv or .jsonl file"))
        if problems:
            raise problems_error(problems)
        return self


# --- the requests file ---------------------------------------------------------------------------


def _lines(handle: Any, digest: Any) -> Iterator[tuple[int, str | None]]:
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        digest.update(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(MAX_LINE_BYTES + 1)
                digest.update(raw)
            yield number, None
            continue
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            yield number, None
            continue
        if text.strip():
            yield number, text.rstrip("\r\n")


def _request(position: str, identities: object, addresses: object) -> Request | str:
    idents = [identities] if isinstance(identities, str) else identities or []
    addrs = [addresses] if isinstance(addresses, str) else addresses or []
    if not isinstance(idents, list) or not isinstance(addrs, list):
        return "identities and addresses must be lists of text"
    idents = [i for i in idents if i != ""]
    addrs = [a for a in addrs if a != ""]
    if not idents and not addrs:
        return "names nobody: give an identity or an address"
    for value in idents:
        if (problem := identity_problem(value)) is not None:
            return f"an identity {problem}"
    for value in addrs:
        if (problem := address_problem(value)) is not None:
            return f"an address {problem}"
    return Request(position, tuple(idents), tuple(addrs))


def _rows(
    path: Path, where: str, digest: Any, display: str = ""
) -> Iterator[tuple[int, Request | str]]:
    """The rows of a requests file: (line, request) or (line, problem). Raises SpecError when
    the file cannot be used at all."""
    shown = display or path.name
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise SpecError(
            f"{where}: {shown} is not a .csv, .jsonl or .ndjson file (the extension sets the "
            "format)"
        )
    try:
        handle = open_regular_stream(path)
    except FileNotFoundError:
        raise SpecError(
            f"{where}: {shown} does not exist (a relative path starts at the spec file's directory)"
        ) from None
    except (UntrustedFile, OSError) as exc:
        reason = exc.reason if isinstance(exc, UntrustedFile) else exc.strerror
        raise SpecError(f"{where}: {shown} cannot be read ({reason})") from None
    with handle:
        columns: list[str] | None = None
        for number, text in _lines(handle, digest):
            position = f"{where} line {number}"
            if text is None:
                yield number, "is not UTF-8 text, or is longer than 64 KiB"
                continue
            if suffix != ".csv":
                try:
                    value = json.loads(text)
                except ValueError:
                    yield number, "is not JSON"
                    continue
                if not isinstance(value, dict):
                    yield number, 'is not an object like {"identities": [...], "addresses": [...]}'
                    continue
                yield number, _request(position, value.get("identities"), value.get("addresses"))
                continue
            cells = [c.strip() for c in next(csv.reader([text]))]
            if columns is None:
                columns = [c.lower() for c in cells]
                if "identity" not in columns and "address" not in columns:
                    raise SpecError(
                        f"{where}: line {number}: the header row names neither an "
                        "identity nor an address column"
                    )
                continue
            row = dict(zip(columns, cells, strict=False))
            yield number, _request(position, row.get("identity"), row.get("address"))


def check_requests(path: Path, where: str, display: str) -> ManifestInfo:
    """Read a whole requests file, checking every row; SpecError listing every bad row (by line,
    never quoting one: they hold personal data)."""
    digest = hashlib.sha256()
    problems: list[str] = []
    count = bad = 0
    try:
        for number, row in _rows(path, where, digest, display):
            if isinstance(row, Request):
                count += 1
                continue
            bad += 1
            if bad <= MAX_PROBLEMS:
                problems.append(f"{where}: {display} line {number}: {row}")
    except OSError as exc:
        raise SpecError(f"{where}: {display} cannot be read ({exc.strerror})") from None
    if bad > MAX_PROBLEMS:
        problems.append(f"{where}: {display}: {bad - MAX_PROBLEMS} more bad rows")
    if not count and not bad:
        problems.append(f"{where}: {display} has no requests: it needs at least one row")
    if problems:
        raise SpecError(problems)
    return ManifestInfo(count, digest.hexdigest())


def read_requests(path: Path, where: str, sha256: str) -> Iterator[Request]:
    """Stream the requests of a file checked by :func:`check_requests`; BadListing if it has
    changed since (its rows are checked again as they are read)."""
    digest = hashlib.sha256()
    try:
        for number, row in _rows(path, where, digest):
            if not isinstance(row, Request):
                raise BadListing(
                    where, f"line {number} {row}: the file changed since the job started"
                )
            yield row
    except (SpecError, OSError) as exc:
        raise BadListing(where, "the requests file cannot be read again") from exc
    if digest.hexdigest() != sha256:
        raise BadListing(where, "the requests file changed since the job started")


# --- the listing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListIdentity(Listing):
    """What of each request's person the target deletes: their messages, participants and
    Users in the job's Service, or in each of its Services."""

    spans_services: ClassVar[bool] = True  # a request is looked up in every Service at once

    where: str  # targets[2]
    parts: tuple[Part, ...]
    requests: tuple[Request, ...] = ()  # written in the spec
    file: tuple[Path, str] | None = field(default=None)  # a requests file and its SHA-256

    @property
    def kind(self) -> ResourceKind:
        """The first kind it emits (the phase it is listed in)."""
        return self.kinds()[0]

    def kinds(self) -> tuple[ResourceKind, ...]:
        """Every kind of target it may emit."""
        by_part = {"messages": messages.KIND, "participants": participants.KIND, "user": users.KIND}
        return tuple(by_part[p] for p in self.parts)

    def path(self, service: str | None) -> str:
        """The collection it lists, as its discovery error names it."""
        return f"{v1_prefix(service)}/ParticipantConversations"

    def _requests(self) -> Iterator[Request]:
        if self.file is None:
            return iter(self.requests)
        path, sha256 = self.file
        return read_requests(path, f"{self.where}.from_file", sha256)

    async def list(self, ctx: ListContext) -> None:
        """Erase several requests' people at once (each is a few lookups and a few pages)."""
        broken = _Broken()
        send, receive = anyio.create_memory_object_stream[Request](ctx.fanout)
        async with anyio.create_task_group() as tg:
            for _ in range(ctx.fanout):
                tg.start_soon(self._drain, ctx, receive.clone(), broken)
            receive.close()
            async with send:
                listed = ctx.listed
                try:
                    for request in self._requests():
                        # A resume skips the requests an earlier run listed in full.
                        if listed is None or not listed.done(request.position):
                            await send.send(request)
                except BadListing as exc:
                    ctx.rejected.failed(exc)

    async def _drain(
        self, ctx: ListContext, requests: ObjectReceiveStream[Request], broken: _Broken
    ) -> None:
        async with requests:
            async for request in requests:
                before = ctx.rejected.total()
                try:
                    found, whole = await self._everywhere(ctx, request, broken)
                except BadListing as exc:
                    ctx.rejected.failed(exc)
                    continue
                if found:
                    log.info("erasure_request_found", request=request.position, found=found)
                elif whole:
                    log.info("erasure_request_not_found", request=request.position)
                # Anything left out meanwhile (by this request, or conservatively by another
                # listed at once), or a Service not asked: not recorded, so a resume lists it
                # again.
                left_out = ctx.rejected.total() - before
                settled = ctx.listed.settled if ctx.listed is not None else None
                if settled is not None and whole and not left_out:
                    # After its targets' lines, through the same log: the record implies them.
                    await settled(request.position, found)

    async def _everywhere(
        self, ctx: ListContext, request: Request, broken: _Broken
    ) -> tuple[int, bool]:
        """Erase one request's person in each Service of the job; how many things were found
        in all, and whether every Service was asked to the end (not_found needs them all)."""
        services = ctx.services()
        if services is None:
            return await self._erase(ctx, request), True
        found = 0
        whole = True

        async def one(service: ListContext) -> None:
            nonlocal found, whole
            if broken.failed(service.service):
                whole = False  # asked no more: its lookups failed for an earlier request
                return
            try:
                here = await self._erase(service, request)
            except AuthError:
                raise
            except RemoteError as exc:
                # The other Services go on; this one is counted failed once, not per request.
                whole = False
                broken.add(service, exc)
            else:
                found += here  # after the await: the Services add up at once

        # Each Service at once: each has its own budget.
        async with anyio.create_task_group() as tg:
            for service in services:
                tg.start_soon(one, service)
        return found, whole

    async def _erase(self, ctx: ListContext, request: Request) -> int:
        """Emit what this target deletes of one request's person in the context's Service; how
        many things were found (conversations they take part in, and Users)."""
        found = await _memberships(ctx, request)
        conversations = list(dict.fromkeys(c for c, _ in found.members))
        people = dict.fromkeys(found.users)
        for identity in request.identities:
            user = await _user(ctx, request, identity)
            if user is not None:
                people[user] = None
        count = len(conversations) + len(people)
        listed = ctx.listed
        if listed is not None:
            # Recorded before anything is emitted (and so deleted): a resume that looks again
            # finds less, and counts what this run found here.
            if count and listed.found is not None:
                listed.found(request.position, ctx.service, count)
            count = max(count, listed.found_before(request.position, ctx.service))
        # Messages first: once a participant is deleted, ParticipantConversations no longer
        # leads to its conversation, so a resume must find every message in the log already
        # (targets are logged in the order they are emitted, before any is sent).
        if "messages" in self.parts:
            for sid in conversations:
                if not ctx.skip(sid):
                    await _messages(ctx, sid, request.authors)
        if "participants" in self.parts:
            await ctx.emit([Target(participants.KIND, p, c) for c, p in found.members])
        if "user" in self.parts:
            await ctx.emit([Target(users.KIND, sid) for sid in people])
        return count


@dataclass
class _Broken:
    """The Services of a job of several whose erasure lookups failed: each is counted once (one
    discovery error, one warning) and not asked again in this run; the requests it leaves
    unsettled are listed again by a resume."""

    services: set[str | None] = field(default_factory=set)

    def failed(self, service: str | None) -> bool:
        """Whether ``service``'s lookups have failed."""
        return service in self.services

    def add(self, ctx: ListContext, error: RemoteError) -> None:
        """Count the failure of ``ctx``'s Service, unless it was counted already."""
        if ctx.service in self.services:
            return
        self.services.add(ctx.service)
        if not isinstance(error, BadListing):
            # Its message could show a path or query holding an identity: say where and how.
            error = BadListing(
                f"{v1_prefix(ctx.service)}/ParticipantConversations",
                f"the erasure lookups in this Service failed (HTTP {error.status}, "
                f"code {error.code})",
            )
        ctx.rejected.failed(error)


@dataclass
class _Found:
    """Where a person takes part: (conversation, participant) pairs, and the Users behind them."""

    members: dict[tuple[str, str], None] = field(default_factory=dict)
    users: dict[str, None] = field(default_factory=dict)


async def _memberships(ctx: ListContext, request: Request) -> _Found:
    """Each place the request's person takes part in, and their Users there."""
    path = f"{v1_prefix(ctx.service)}/ParticipantConversations"
    rejected = ctx.rejected
    found = _Found()
    asked = [("Identity", i) for i in request.identities]
    asked += [("Address", a) for a in request.addresses]
    for name, value in asked:
        params = [(name, value), ("PageSize", str(PAGE))]
        async for page in ctx.v1_pages(path, "conversations", params):
            before = rejected.total()
            for item in page:
                conversation = item_id(item, "conversation_sid", CONVERSATION_SID, rejected)
                member = item_id(item, "participant_sid", participants.KIND.pattern, rejected)
                if (
                    conversation is not None
                    and member is not None
                    and belongs(item, "chat_service_sid", ctx.service, rejected)
                    and _is_them(item, name, value, rejected)
                ):
                    found.members[conversation, member] = None
                    user = item.get("participant_user_sid")
                    if user is not None:
                        sid = listed_id(user, users.KIND.pattern, rejected)
                        if sid is not None:
                            found.users[sid] = None
            rejected.note(path, before)
    return found


def _is_them(item: dict[str, Any], name: str, value: str, rejected: Rejections) -> bool:
    """An item must be the participant asked for: a reply naming someone else is left out."""
    if name == "Identity":
        named = item.get("participant_identity")
    else:
        binding = item.get("participant_messaging_binding")
        named = binding.get("address") if isinstance(binding, dict) else None
    if named == value:
        return True
    rejected.foreign += 1
    return False


async def _messages(ctx: ListContext, conversation: str, authors: frozenset[str]) -> None:
    """Emit the messages of one conversation whose author is the request's person."""
    rejected = ctx.rejected
    path = f"{conversations_prefix(ctx.service)}/{conversation}/Messages"
    async for page in ctx.v1_pages(path, "messages", [("PageSize", str(V1_PAGE))]):
        before = rejected.total()
        selected: list[Target] = []
        for item in page:
            if not isinstance(item, dict) or item.get("author") not in authors:
                continue  # someone else's (or nobody's) message: not this request's to judge
            sid = item_id(item, "sid", messages.KIND.pattern, rejected)
            if (
                sid is not None
                and belongs(item, "conversation_sid", conversation, rejected)
                and belongs(item, "chat_service_sid", ctx.service, rejected)
            ):
                selected.append(Target(messages.KIND, sid, conversation))
        rejected.note(path, before)
        await ctx.emit(selected)


async def _user(ctx: ListContext, request: Request, identity: str) -> str | None:
    """The SID of the User of ``identity`` in the job's Service, or None when it has none."""
    if "/" in identity or identity in (".", ".."):
        # It cannot be put in a path; its User, if any, was found through its participants.
        return None
    listing = f"{users.users_path(ctx.service)}/{{identity}}"
    try:
        # The client quotes it (an identity is often an e-mail address, "?" and "#" allowed).
        body = await ctx.fetch(f"{users.users_path(ctx.service)}/{identity}")
    except AuthError as exc:
        exc.url = None  # its path holds the identity: the refusal is shown without it
        raise
    except RemoteError as exc:
        # Its message would show the path, which holds the identity: say only where and how.
        raise BadListing(
            listing, f"the User lookup of {request.position} failed (HTTP {exc.status})"
        ) from None
    if body is None:
        return None
    rejected = ctx.rejected
    before = rejected.total()
    sid = item_id(body, "sid", users.KIND.pattern, rejected)
    if sid is None or not belongs(body, "chat_service_sid", ctx.service, rejected):
        rejected.note(listing, before)
        return None
    if body.get("identity") != identity:
        rejected.foreign += 1
        rejected.note(listing, before)
        return None
    return sid


def _select(target: SpecTarget, window: Windows, where: str) -> ListIdentity:
    assert isinstance(target, IdentityTarget)
    if target.from_file is not None:
        assert target.manifest_path is not None and target.manifest is not None
        return ListIdentity(
            where, target.parts, file=(target.manifest_path, target.manifest.sha256)
        )
    request = Request(where, target.identities or (), target.addresses or ())
    return ListIdentity(where, target.parts, (request,))


SELECTOR = Selector(
    word="identity",
    label="people (erasure requests)",
    yields=(messages.KIND, participants.KIND, users.KIND),
    target_model=IdentityTarget,
    select=_select,
    check_file=check_requests,
)
