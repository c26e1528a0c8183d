"""Live, mutable state of every resource, built fresh from a :class:`~.dataset.Dataset`.

Ordering structures exist for keyset paging: v1 conversations per Service in a sorted list of
(date_created, sid); messages as positions in an :class:`~.alive.AliveSet` (index order is creation
order); v2 conversations, configurations and stores as sorted TTID lists (TTIDs sort by creation).
Deleting is O(log n) for messages and a bisect + list delete elsewhere.

Users are kept per Service like conversations. Which conversations a person is in (by identity
or address) is indexed once at start; entries whose participant or conversation has gone are
skipped when read, so deletes never have to maintain that index.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from .alive import AliveSet
from .dataset import (
    ConfigurationSpec,
    ConversationSpec,
    ConversationV2Spec,
    Dataset,
    ParticipantSpec,
    ServiceSpec,
    StoreSpec,
    UserSpec,
    author_participant,
)

# A participant's place in the membership index: (conversation date_created, conversation SID,
# participant SID), which is also the keyset order of ParticipantConversations.
Membership = tuple[float, str, str]


@dataclass(slots=True)
class ConversationV1:
    """A v1 conversation: its spec plus live participants and message positions."""

    spec: ConversationSpec
    participants: dict[str, ParticipantSpec]
    messages: AliveSet

    @property
    def sid(self) -> str:
        return self.spec.sid

    @property
    def service_sid(self) -> str:
        return self.spec.service_sid


@dataclass(slots=True)
class SortedIds:
    """IDs kept in sort order (TTIDs or (date, sid) tuples) with bisect-based removal."""

    keys: list[str] = field(default_factory=list)

    def remove(self, key: str) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]


class Store:
    """Every live resource of one emulated account."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.message_sids = dataset.message_sids
        self.services: dict[str, ServiceSpec] = {s.sid: s for s in dataset.services}
        self.default_service_sid = dataset.default_service.sid
        self.conversations: dict[str, ConversationV1] = {}
        self.by_number: list[ConversationV1 | None] = []
        # per Service: sorted (date_created, sid) keys
        self.service_index: dict[str, list[tuple[float, str]]] = {s: [] for s in self.services}
        self.unique_names: dict[tuple[str, str], str] = {}
        for spec in dataset.conversations:
            conv = ConversationV1(spec, {p.sid: p for p in spec.participants},
                                  AliveSet(spec.message_count))
            self.conversations[spec.sid] = conv
            self.by_number.append(conv)
            self.service_index[spec.service_sid].append((spec.date_created, spec.sid))
            if spec.unique_name:
                self.unique_names[(spec.service_sid, spec.unique_name)] = spec.sid
        for keys in self.service_index.values():
            keys.sort()
        self.message_count = dataset.message_total
        self.participant_count = sum(len(c.participants) for c in self.conversations.values())
        self.conversations_v2: dict[str, ConversationV2Spec] = {
            c.id: c for c in dataset.conversations_v2
        }
        self.v2_order = SortedIds(sorted(self.conversations_v2))
        self.configurations: dict[str, ConfigurationSpec] = {
            c.id: c for c in dataset.configurations
        }
        self.configuration_order = SortedIds(sorted(self.configurations))
        self.stores: dict[str, StoreSpec] = {s.id: s for s in dataset.stores}
        self.store_order = SortedIds(sorted(self.stores))
        self.users: dict[str, UserSpec] = {u.sid: u for u in dataset.users}
        # per Service: sorted (date_created, sid) keys; (Service, identity) -> User SID
        self.user_index: dict[str, list[tuple[float, str]]] = {s: [] for s in self.services}
        self.user_identities: dict[tuple[str, str], str] = {}
        for user in dataset.users:
            self.user_index[user.service_sid].append((user.date_created, user.sid))
            self.user_identities[(user.service_sid, user.identity)] = user.sid
        for user_keys in self.user_index.values():
            user_keys.sort()
        # (Service, "identity" | "address", value) -> memberships in keyset order
        self.memberships: dict[tuple[str, str, str], list[Membership]] = {}
        for spec in dataset.conversations:
            for p in spec.participants:
                for field_name, value in (("identity", p.identity), ("address", p.address)):
                    if value:
                        self.memberships.setdefault((spec.service_sid, field_name, value), []
                                                    ).append((spec.date_created, spec.sid, p.sid))
        for rows in self.memberships.values():
            rows.sort()

    # ------------------------------------------------------------------ v1 lookups

    def conversation(self, service_sid: str, sid_or_name: str) -> ConversationV1 | None:
        """A conversation of ``service_sid`` by SID or unique_name."""
        conv = self.conversations.get(sid_or_name)
        if conv is None:
            sid = self.unique_names.get((service_sid, sid_or_name))
            conv = self.conversations.get(sid) if sid else None
        return conv if conv is not None and conv.service_sid == service_sid else None

    def message_position(self, conv: ConversationV1, sid: str) -> int | None:
        """Index of a live message of ``conv`` from its SID."""
        pos = self.message_sids.position(sid[:2] + sid[2:].lower())
        if pos is None or pos[0] != conv.spec.no or pos[1] not in conv.messages:
            return None
        return pos[1]

    def message_sid(self, conv: ConversationV1, index: int) -> str:
        """The SID of message ``index`` of ``conv``."""
        return self.message_sids.sid(conv.spec.no, index)

    def message_content(
        self, conv: ConversationV1, index: int
    ) -> tuple[str, str, float, str | None]:
        """(author, body, date_created, participant_sid) of a message."""
        author, body, created = self.dataset.message_content(conv.spec, index)
        return author, body, created, author_participant(conv.spec, author)

    def message_date(self, conv: ConversationV1, index: int) -> float:
        """date_created of a message without rendering its body."""
        spec = conv.spec
        if spec.messages is not None:
            return spec.messages[index].date_created
        span = spec.date_updated - spec.date_created
        return spec.date_created + span * (index + 1) / (spec.message_count + 1)

    def participant(self, conv: ConversationV1, sid_or_identity: str) -> ParticipantSpec | None:
        """A live participant by SID or identity."""
        p = conv.participants.get(sid_or_identity)
        if p is not None:
            return p
        for candidate in conv.participants.values():
            if candidate.identity == sid_or_identity:
                return candidate
        return None

    def user(self, service_sid: str, sid_or_identity: str) -> UserSpec | None:
        """A live User of ``service_sid`` by SID or identity (the spec allows either)."""
        user = self.users.get(sid_or_identity)
        if user is None:
            sid = self.user_identities.get((service_sid, sid_or_identity))
            user = self.users.get(sid) if sid else None
        return user if user is not None and user.service_sid == service_sid else None

    def memberships_of(self, service_sid: str, field_name: str, value: str
                       ) -> list[tuple[Membership, ConversationV1, ParticipantSpec]]:
        """The live participants whose ``field_name`` (identity or address) is ``value``."""
        out = []
        for row in self.memberships.get((service_sid, field_name, value), ()):
            conv = self.conversations.get(row[1])
            p = conv.participants.get(row[2]) if conv is not None else None
            if conv is not None and p is not None:
                out.append((row, conv, p))
        return out

    # ------------------------------------------------------------------ v1 deletes

    def delete_user(self, user: UserSpec) -> bool:
        """Remove a User. Its participants and their messages stay: nothing documents a cascade,
        and a participant's identity is its own field, not a link to the User."""
        if self.users.pop(user.sid, None) is None:
            return False
        keys = self.user_index[user.service_sid]
        i = bisect.bisect_left(keys, (user.date_created, user.sid))
        if i < len(keys) and keys[i] == (user.date_created, user.sid):
            del keys[i]
        self.user_identities.pop((user.service_sid, user.identity), None)
        return True

    def delete_message(self, conv: ConversationV1, index: int) -> bool:
        """Remove one message; ``False`` if it was already gone."""
        if conv.messages.remove(index):
            self.message_count -= 1
            return True
        return False

    def delete_participant(self, conv: ConversationV1, sid: str) -> bool:
        """Remove one participant (their messages stay, as Twilio documents)."""
        if conv.participants.pop(sid, None) is None:
            return False
        self.participant_count -= 1
        return True

    def delete_conversation(self, conv: ConversationV1) -> tuple[array[int], tuple[str, ...]]:
        """Remove a conversation; returns the message positions and participant SIDs cascaded."""
        del self.conversations[conv.sid]
        self.by_number[conv.spec.no] = None
        keys = self.service_index[conv.service_sid]
        i = bisect.bisect_left(keys, (conv.spec.date_created, conv.sid))
        if i < len(keys) and keys[i] == (conv.spec.date_created, conv.sid):
            del keys[i]
        if conv.spec.unique_name:
            self.unique_names.pop((conv.service_sid, conv.spec.unique_name), None)
        alive = conv.messages
        if alive.alive == alive.size:  # untouched: no tree to walk
            messages = array("I", range(alive.size))
        else:
            messages = array("I", self.iter_messages(conv))
        participants = tuple(conv.participants)
        conv.messages.clear()
        conv.participants.clear()
        self.message_count -= len(messages)
        self.participant_count -= len(participants)
        return messages, participants

    def iter_messages(self, conv: ConversationV1) -> Iterator[int]:
        """Positions of the live messages of ``conv`` in index order."""
        pos = conv.messages.next_at_or_after(0)
        while pos is not None:
            yield pos
            pos = conv.messages.next_at_or_after(pos + 1)

    # ------------------------------------------------------------------ v2 / memory deletes

    def delete_conversation_v2(self, cid: str) -> bool:
        """Remove a v2 conversation (an Operation completed)."""
        if self.conversations_v2.pop(cid, None) is None:
            return False
        self.v2_order.remove(cid)
        return True

    def delete_configuration(self, cid: str) -> bool:
        """Remove a configuration (an Operation completed)."""
        if self.configurations.pop(cid, None) is None:
            return False
        self.configuration_order.remove(cid)
        return True

    def delete_store(self, sid: str) -> bool:
        """Remove a Memory store (an Operation completed)."""
        if self.stores.pop(sid, None) is None:
            return False
        self.store_order.remove(sid)
        return True
