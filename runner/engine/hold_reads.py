"""Reading a v1 conversation's attributes before a DELETE in it, for the attribute holds.

Discovery judges the attributes of every v1 conversation it lists
(:meth:`~runner.engine.holds.HoldList.note_attributes`). A target whose conversation no
listing of this run showed — a resume of an old log, explicit IDs, a manifest, an identity
erasure — waits here before its DELETE: its conversation is fetched once
(``GET /v1/[Services/IS…/]Conversations/CH…``, paced like every request of the run), judged,
and only the verdict kept. A read that fails holds the conversation for this run (fail
safe, counted as ``unreadable attributes``): nothing is deleted in a conversation whose
attributes could not be read. A 404 holds nothing: the conversation is gone, and so is all it
held.
"""

from __future__ import annotations

import anyio
import structlog

from runner.engine.holds import HoldList
from runner.errors import AuthError, PermanentError, RemoteError
from runner.kinds.base import Product, Target
from runner.kinds.v1 import conversations_prefix
from runner.wire.requester import Requester

__all__ = ["AttributeReads"]

log = structlog.get_logger("bulkops.holds")


class AttributeReads:
    """The attribute reads of one run: one GET per conversation, shared by everyone waiting."""

    def __init__(self, holds: HoldList, requester: Requester, service: str | None) -> None:
        self._holds = holds
        self._requester = requester
        self._service = service
        self._reading: dict[str, anyio.Event] = {}  # conversation → its read in flight

    async def judge(self, target: Target) -> None:
        """Make sure the attribute verdict of ``target``'s v1 conversation is known (a run asks
        before its DELETE, a verify before it calls a listed target remaining). Raises
        AuthError and PausedTooLong; any other failure holds the conversation."""
        conversation = self._holds.attributes_unknown(target)
        if conversation is None:
            return
        waiting = self._reading.get(conversation)
        if waiting is not None:
            await waiting.wait()
            return
        done = self._reading[conversation] = anyio.Event()
        try:
            await self._read(conversation, target.service or self._service)
        finally:
            # Cancelled mid-read: no verdict, so the send-time check holds it (fail safe).
            del self._reading[conversation]
            done.set()

    async def _read(self, conversation: str, service: str | None) -> None:
        path = f"{conversations_prefix(service)}/{conversation}"
        try:
            reply = await self._requester.send("GET", Product.CONVERSATIONS, path)
        except AuthError:
            raise
        except PermanentError as exc:
            if exc.status == 404:
                self._holds.note_attributes(conversation, "{}")  # gone: nothing left to hold
                return
            self._unreadable(conversation, exc)
            return
        except RemoteError as exc:  # 5xx, faults or 429s past the retry policy's bounds
            self._unreadable(conversation, exc)
            return
        body = reply.body
        sid = body.get("sid") if isinstance(body, dict) else None
        if sid != conversation:
            # Not the conversation asked for: its attributes say nothing about this one.
            self._holds.note_unreadable(conversation)
            log.warning("hold_attributes_unreadable", conversation=conversation, status=200)
            return
        self._holds.note_attributes(conversation, body.get("attributes"))

    def _unreadable(self, conversation: str, exc: RemoteError) -> None:
        self._holds.note_unreadable(conversation)
        log.warning(
            "hold_attributes_unreadable",
            conversation=conversation,
            status=exc.status,
            code=exc.code,
        )
