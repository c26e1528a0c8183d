"""What the emulator starts with: presets generated from a seed number, or a seed file.

A :class:`Dataset` is immutable description, not live state: :class:`~.store.Store` builds fresh
mutable state from it, so one dataset can back many emulators (tests reuse it). Messages are
described by a count (bodies and authors are pure functions of the position, see :mod:`.pii`) or,
from a seed file, by an explicit list.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import yaml

from . import pii
from .clock import parse_iso
from .ids import STORE_ID, IdMinter, PositionalSids

DAY: Final = 86_400.0
V1_STATES: Final = ("active", "inactive", "closed")
V2_STATUSES: Final = ("ACTIVE", "INACTIVE", "CLOSED")
# Above this many generated messages pii_samples() stops listing every body (it would be huge);
# participant identities and addresses are always complete and every body quotes one of the pools.
PII_BODY_LIMIT: Final = 20_000


class SeedError(ValueError):
    """A seed file or generation parameter is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A Conversations Service (IS...)."""

    sid: str
    friendly_name: str
    date_created: float
    is_default: bool = False


@dataclass(frozen=True, slots=True)
class ParticipantSpec:
    """A v1 participant: a chat identity or an SMS address."""

    sid: str
    identity: str | None
    address: str | None
    proxy_address: str | None
    date_created: float


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A Conversation User (US...): the chat identity behind participants of one Service.

    Twilio backs every participant who connects through a Chat SDK with a User, unique by
    identity within its Conversation Service; SMS participants have none.
    """

    sid: str
    service_sid: str
    identity: str
    friendly_name: str
    attributes: str
    date_created: float


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """An explicit message from a seed file."""

    author: str
    body: str
    date_created: float


@dataclass(frozen=True, slots=True)
class ConversationSpec:
    """A v1 conversation and the shape of its messages."""

    sid: str
    no: int
    service_sid: str
    friendly_name: str
    unique_name: str | None
    state: str
    date_created: float
    date_updated: float
    participants: tuple[ParticipantSpec, ...]
    message_count: int
    messages: tuple[MessageSpec, ...] | None = None
    # Twilio's `attributes`: a JSON object as a string (PII, like every attribute).
    attributes: str = "{}"


@dataclass(frozen=True, slots=True)
class ConversationV2Spec:
    """A Conversation Orchestrator v2 conversation."""

    id: str
    configuration_id: str
    status: str
    name: str | None
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class ConfigurationSpec:
    """A v2 configuration."""

    id: str
    display_name: str
    description: str
    memory_store_id: str
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A Memory store."""

    id: str
    display_name: str
    description: str


@dataclass(frozen=True)
class Dataset:
    """Everything the emulator serves at start-up."""

    tag: int
    services: tuple[ServiceSpec, ...]
    conversations: tuple[ConversationSpec, ...]
    conversations_v2: tuple[ConversationV2Spec, ...] = ()
    configurations: tuple[ConfigurationSpec, ...] = ()
    stores: tuple[StoreSpec, ...] = ()
    users: tuple[UserSpec, ...] = ()

    @cached_property
    def message_sids(self) -> PositionalSids:
        """The reversible message-SID grid of this dataset (keyed by its tag)."""
        return PositionalSids("IM", self.tag)

    @property
    def default_service(self) -> ServiceSpec:
        """The account's default Conversations Service (what /v1/Conversations addresses)."""
        return next(s for s in self.services if s.is_default)

    @property
    def message_total(self) -> int:
        """How many messages the dataset holds."""
        return sum(c.message_count for c in self.conversations)

    def message_content(self, conversation: ConversationSpec, index: int) -> tuple[str, str, float]:
        """(author, body, date_created) of message ``index`` of ``conversation``."""
        if conversation.messages is not None:
            m = conversation.messages[index]
            return m.author, m.body, m.date_created
        span = conversation.date_updated - conversation.date_created
        created = conversation.date_created + span * (index + 1) / (conversation.message_count + 1)
        author = author_of(conversation, index)
        return author, pii.body(self.tag, conversation.no, index), created

    def pii_samples(self) -> list[str]:
        """Every PII-looking string the dataset serves (bodies only up to PII_BODY_LIMIT)."""
        values: set[str] = set()
        for conversation in self.conversations:
            values.add(conversation.friendly_name)
            for p in conversation.participants:
                values.update(x for x in (p.identity, p.address) if x)
            if conversation.messages is not None:
                for m in conversation.messages:
                    values.update((m.author, m.body))
        if self.message_total <= PII_BODY_LIMIT:
            for conversation in self.conversations:
                if conversation.messages is None:
                    for i in range(conversation.message_count):
                        values.add(self.message_content(conversation, i)[1])
        values.update(c.name for c in self.conversations_v2 if c.name)
        for user in self.users:
            values.update((user.identity, user.friendly_name, user.attributes))
        values.update(c.attributes for c in self.conversations if c.attributes != "{}")
        return sorted(values)


# Every LEGAL_HOLD_EVERY-th generated v1 conversation (by its number) is under a legal hold its
# attributes declare, as a CRM integration writes it: what `exclude.where.attributes` matches.
LEGAL_HOLD_EVERY: Final = 4


def conversation_attributes(no: int, customer: str) -> str:
    """The attributes of generated v1 conversation ``no``: the customer (PII), and on every
    :data:`LEGAL_HOLD_EVERY`-th one (no 1, 5, 9, …) a legal hold and its matter number."""
    attributes: dict[str, Any] = {"customer": customer, "channel": "chat"}
    if no % LEGAL_HOLD_EVERY == 1:
        attributes.update(legal_hold=True, matter=f"M-2026-{no:04d}")
    return json.dumps(attributes)


def author_of(conversation: ConversationSpec, index: int) -> str:
    """The author string of a generated message: one of the conversation's participants."""
    if not conversation.participants:
        return "system"
    p = conversation.participants[(index * 7 + conversation.no) % len(conversation.participants)]
    return p.identity or p.address or "system"


def author_participant(conversation: ConversationSpec, author: str) -> str | None:
    """The participant SID whose identity or address is ``author``."""
    for p in conversation.participants:
        if author in (p.identity, p.address):
            return p.sid
    return None


# --------------------------------------------------------------------------------------- builders


class _Builder:
    """Mints IDs in a fixed order so the same seed gives the same dataset."""

    def __init__(self, seed: int, now: float) -> None:
        self.seed = seed
        self.now = now
        self.rng = random.Random(f"dataset:{seed}")
        self.ids = IdMinter(seed)
        self.tag = self.rng.getrandbits(64)
        self.services: list[ServiceSpec] = []
        self.conversations: list[ConversationSpec] = []
        self.v2: list[ConversationV2Spec] = []
        self.configs: list[ConfigurationSpec] = []
        self.stores: list[StoreSpec] = []
        # Identities shared by many conversations (the presets' regulars); empty: all one-off.
        self.regulars: tuple[str, ...] = ()
        # Each regular's phone, when they also write by SMS and WhatsApp (regular_phones=True).
        self.regular_phones: tuple[str, ...] = ()
        # The pii key each generated identity was drawn from, so its User's name matches it.
        self.identity_keys: dict[str, tuple[int, ...]] = {}

    def service(self, name: str, created: float, *, default: bool = False) -> ServiceSpec:
        spec = ServiceSpec(self.ids.sid("IS"), name, created, default)
        self.services.append(spec)
        return spec

    def participants(self, no: int, count: int, created: float) -> tuple[ParticipantSpec, ...]:
        out = []
        for k in range(count):
            if k == 0 and self.regular_phones and no % 3 == 2:
                # The regular writes by phone this time: SMS, or WhatsApp every other time.
                number = self.regular_phones[no % len(self.regular_phones)]
                channel = "whatsapp:" if no % 2 else ""
                ident, addr, proxy = None, channel + number, channel + "+15005550006"
            elif k == 0 and self.regulars:
                ident, addr, proxy = self.regulars[no % len(self.regulars)], None, None
            elif k % 2 == 0:
                key = (no, k) if pii.email(self.tag, no, k) not in self.regulars else (no, k, 1)
                ident, addr, proxy = pii.email(self.tag, *key), None, None
                self.identity_keys[ident] = key
            else:
                ident, addr, proxy = None, pii.phone(self.tag, no, k), "+15005550006"
            out.append(ParticipantSpec(self.ids.sid("MB"), ident, addr, proxy, created + k))
        return tuple(out)

    def conversation(
        self,
        *,
        service_sid: str,
        state: str,
        created: float,
        updated: float | None = None,
        participants: int | Sequence[Mapping[str, Any]] = 2,
        messages: int | Sequence[MessageSpec] = 0,
        friendly_name: str | None = None,
        unique_name: str | None = None,
        sid: str | None = None,
        attributes: str | None = None,
    ) -> ConversationSpec:
        no = len(self.conversations)
        minted = self.ids.sid("CH")
        # Twilio's dates have whole seconds; filters compare what clients can see.
        created = float(int(created))
        if isinstance(participants, int):
            parts = self.participants(no, participants, created)
        else:
            parts = tuple(
                ParticipantSpec(
                    self.ids.sid("MB"), p.get("identity"), p.get("address"),
                    p.get("proxy_address"), created + k,
                )
                for k, p in enumerate(participants)
            )
        if updated is None:
            updated = min(self.now, created + self.rng.uniform(0.5, 30) * DAY)
        updated = float(int(updated))
        first, last = pii.person(self.tag, no, 99)
        explicit = None if isinstance(messages, int) else tuple(messages)
        spec = ConversationSpec(
            sid=sid or minted,
            no=no,
            service_sid=service_sid,
            friendly_name=friendly_name or f"Support chat with {first} {last}",
            unique_name=unique_name,
            state=state,
            date_created=created,
            date_updated=max(updated, created),
            participants=parts,
            message_count=len(explicit) if explicit is not None else int(messages),  # type: ignore[arg-type]
            messages=explicit,
            attributes=attributes if attributes is not None else conversation_attributes(
                no, f"{first} {last}"
            ),
        )
        self.conversations.append(spec)
        return spec

    def store(self, name: str) -> StoreSpec:
        spec = StoreSpec(
            self.ids.ttid("mem_store_", int(self.now * 1000)), name, f"Memory store {name}"
        )
        self.stores.append(spec)
        return spec

    def configuration(self, name: str, store_id: str, created: float) -> ConfigurationSpec:
        created = float(int(created))
        spec = ConfigurationSpec(
            self.ids.ttid("conv_configuration_", int(created * 1000)),
            name, f"Configuration {name}", store_id, created, created + DAY,
        )
        self.configs.append(spec)
        return spec

    def conversation_v2(
        self, configuration_id: str, status: str, created: float, name: str | None = None
    ) -> ConversationV2Spec:
        no = len(self.v2)
        created = float(int(created))
        first, last = pii.person(self.tag, 1_000_000 + no)
        spec = ConversationV2Spec(
            self.ids.ttid("conv_conversation_", int(created * 1000)),
            configuration_id, status, name or f"{first} {last} - order help",
            created, min(self.now, created + DAY),
        )
        self.v2.append(spec)
        return spec

    def regular_people(self, count: int, *, phones: bool = False) -> None:
        """Make the first participant of every later conversation one of ``count`` people; with
        ``phones``, one conversation in three they join by SMS or WhatsApp instead, from a
        number of their own (a person to erase by identity and by address)."""
        keys = [(2_000_000 + r,) for r in range(count)]
        self.regulars = tuple(pii.email(self.tag, *key) for key in keys)
        self.identity_keys.update(zip(self.regulars, keys, strict=True))
        if phones:
            self.regular_phones = tuple(pii.phone(self.tag, *key, 5) for key in keys)

    def users(self) -> tuple[UserSpec, ...]:
        """One User per (Service, chat identity), created with the identity's first participant.

        Minted after everything else, so adding Users changed no other ID of a seed.
        """
        users: dict[tuple[str, str], UserSpec] = {}
        for conversation in self.conversations:
            for p in conversation.participants:
                if p.identity is None or (conversation.service_sid, p.identity) in users:
                    continue
                key = self.identity_keys.get(p.identity) or (zlib.crc32(p.identity.encode()),)
                first, last = pii.person(self.tag, *key)
                attributes = json.dumps({
                    "display_name": f"{first} {last}",
                    "phone": pii.phone(self.tag, *key, 5),
                    "city": pii.CITIES[key[0] % len(pii.CITIES)],
                })
                users[conversation.service_sid, p.identity] = UserSpec(
                    self.ids.sid("US"), conversation.service_sid, p.identity,
                    f"{first} {last}", attributes, p.date_created,
                )
        return tuple(users.values())

    def build(self) -> Dataset:
        return Dataset(
            tag=self.tag,
            services=tuple(self.services),
            conversations=tuple(self.conversations),
            conversations_v2=tuple(sorted(self.v2, key=lambda c: c.id)),
            configurations=tuple(sorted(self.configs, key=lambda c: c.id)),
            stores=tuple(sorted(self.stores, key=lambda s: s.id)),
            users=self.users(),
        )


def generate(preset: str, seed: int = 0, **overrides: Any) -> Dataset:
    """Build a preset: "demo", "small", "tiny", "empty" or "scale" (conversations=,
    messages_per_conversation=, participants_per_conversation=, services=, conversations_v2=,
    configurations=, stores=, now=; demo/small/tiny also take regulars=, the people shared by
    many conversations, and regular_phones=True, for regulars who also write by SMS and
    WhatsApp)."""
    now = float(overrides.pop("now", time.time()))
    b = _Builder(seed, now)
    if preset in ("demo", "small", "tiny"):
        sizes: dict[str, Any] = {
            "demo": dict(services=1, service_conversations=12, plain=3, v2=6, configs=4, stores=3,
                         min_messages=5, max_messages=30, regulars=3, regular_phones=False),
            "small": dict(services=2, service_conversations=6, plain=2, v2=4, configs=2, stores=2,
                          min_messages=3, max_messages=8, regulars=2, regular_phones=False),
            "tiny": dict(services=1, service_conversations=2, plain=1, v2=2, configs=1, stores=1,
                         min_messages=2, max_messages=3, regulars=1, regular_phones=False),
        }[preset]
        sizes.update(overrides)
        _unknown(overrides, sizes)
        _human(b, now, **sizes)
    elif preset == "scale":
        params = dict(conversations=10_000, messages_per_conversation=100,
                      participants_per_conversation=2, services=1, conversations_v2=100,
                      configurations=4, stores=3)
        _unknown(overrides, params)
        params.update(overrides)
        _scale(b, now, **params)
    elif preset == "empty":
        _unknown(overrides, {})
        b.service("Default Conversations Service", now - 400 * DAY, default=True)
    else:
        raise SeedError(f"unknown preset {preset!r} (use demo, small, tiny, empty or scale)")
    return b.build()


def _unknown(given: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    extra = sorted(set(given) - set(known))
    if extra:
        raise SeedError(f"unknown preset parameter(s) {extra}; known: {sorted(known)}")


def _human(
    b: _Builder, now: float, *, services: int, service_conversations: int, plain: int, v2: int,
    configs: int, stores: int, min_messages: int, max_messages: int, regulars: int,
    regular_phones: bool,
) -> None:
    default = b.service("Default Conversations Service", now - 400 * DAY, default=True)
    named = [b.service(f"Support Service {i + 1}", now - 390 * DAY) for i in range(services)]
    # Regulars write in conversations of several Services, as returning customers do; the other
    # chat identities appear once. A person-centred purge needs both kinds.
    b.regular_people(regulars, phones=regular_phones)
    for i in range(service_conversations * len(named)):
        svc = named[i % len(named)]
        age = b.rng.uniform(0, 365) * DAY
        b.conversation(
            service_sid=svc.sid, state=V1_STATES[i % 3], created=now - age,
            participants=2 + i % 3, messages=b.rng.randint(min_messages, max_messages),
        )
    for i in range(plain):
        b.conversation(
            service_sid=default.sid, state=V1_STATES[i % 3],
            created=now - b.rng.uniform(0, 365) * DAY,
            participants=2 + i % 3, messages=b.rng.randint(min_messages, max_messages),
        )
    store_specs = [b.store(f"store-{i + 1}") for i in range(stores)]
    cfgs = [
        b.configuration(f"Config {i + 1}", store_specs[i % len(store_specs)].id if store_specs
                        else "mem_store_00000000000000000000000000", now - (300 - 10 * i) * DAY)
        for i in range(configs)
    ]
    for i in range(v2):
        cfg = cfgs[i % len(cfgs)].id if cfgs else "conv_configuration_00000000000000000000000000"
        b.conversation_v2(cfg, V2_STATUSES[i % 3], now - b.rng.uniform(0, 365) * DAY)


def _scale(
    b: _Builder, now: float, *, conversations: int, messages_per_conversation: int,
    participants_per_conversation: int, services: int, conversations_v2: int,
    configurations: int, stores: int,
) -> None:
    default = b.service("Default Conversations Service", now - 400 * DAY, default=True)
    named = [b.service(f"Scale Service {i + 1}", now - 390 * DAY) for i in range(services)]
    pools = named or [default]
    for i in range(conversations):
        created = now - b.rng.uniform(1, 365) * DAY
        b.conversation(
            service_sid=pools[i % len(pools)].sid, state=V1_STATES[i % 3], created=created,
            updated=min(now, created + DAY), participants=participants_per_conversation,
            messages=messages_per_conversation,
        )
    store_specs = [b.store(f"scale-store-{i + 1}") for i in range(stores)]
    cfgs = [
        b.configuration(f"Scale {i + 1}", store_specs[i % len(store_specs)].id if store_specs
                        else "mem_store_00000000000000000000000000", now - 300 * DAY)
        for i in range(configurations)
    ]
    for i in range(conversations_v2):
        cfg = cfgs[i % len(cfgs)].id if cfgs else "conv_configuration_00000000000000000000000000"
        b.conversation_v2(cfg, V2_STATUSES[i % 3], now - b.rng.uniform(0, 365) * DAY)


# -------------------------------------------------------------------------------------- seed file


def load_seed(path: str | Path, *, now: float | None = None) -> Dataset:
    """Read a YAML or JSON seed file; any problem raises :class:`SeedError` naming the field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read seed file {p}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SeedError(f"seed file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                        f"{exc}") from exc
    return dataset_from_mapping(data, now=now)


def dataset_from_mapping(data: Any, *, now: float | None = None) -> Dataset:
    """Build a dataset from parsed seed data (see docs/emulator.md for the format)."""
    if not isinstance(data, dict):
        raise SeedError("seed: top level must be a mapping")
    _keys("seed", data, {"seed", "services", "conversations", "conversations_v2",
                         "configurations", "stores"})
    clock = time.time() if now is None else now
    seed = _int(data, "seed", "seed", 0)
    b = _Builder(seed, clock)
    default = b.service("Default Conversations Service", clock - 400 * DAY, default=True)
    names: dict[str, str] = {}
    for i, raw in enumerate(_list(data, "services")):
        where = f"services[{i}]"
        item = _map(raw, where)
        _keys(where, item, {"name", "friendly_name", "date_created"})
        name = _str(item, "name", where)
        if name in names:
            raise SeedError(f"{where}.name: duplicate service name {name!r}")
        created = _date(item, "date_created", where, clock - 390 * DAY)
        names[name] = b.service(str(item.get("friendly_name", name)), created).sid
    for i, raw in enumerate(_list(data, "conversations")):
        where = f"conversations[{i}]"
        item = _map(raw, where)
        _keys(where, item, {"service", "state", "date_created", "date_updated", "age_days",
                            "messages", "participants", "friendly_name", "unique_name",
                            "attributes"})
        service = item.get("service")
        if service is None:
            service_sid = default.sid
        elif isinstance(service, str) and service in names:
            service_sid = names[service]
        else:
            raise SeedError(f"{where}.service: unknown service {service!r} "
                            f"(declare it under services:)")
        state = item.get("state", "active")
        if state not in ("initializing", *V1_STATES):
            raise SeedError(f"{where}.state: must be one of initializing, active, inactive, "
                            f"closed, not {state!r}")
        if "age_days" in item:
            created = clock - _num(item, "age_days", where) * DAY
        else:
            created = _date(item, "date_created", where, clock - 30 * DAY)
        updated = _date(item, "date_updated", where, min(clock, created + DAY))
        participants: Any = item.get("participants", 2)
        if not isinstance(participants, int) or isinstance(participants, bool):
            plist = _list({"participants": participants}, "participants", where)
            checked = []
            for k, p in enumerate(plist):
                pw = f"{where}.participants[{k}]"
                pm = _map(p, pw)
                _keys(pw, pm, {"identity", "address", "proxy_address"})
                if not pm.get("identity") and not pm.get("address"):
                    raise SeedError(f"{pw}: needs an identity or an address")
                for key in pm:
                    _str(pm, key, pw)
                checked.append(pm)
            participants = checked
        elif participants < 0:
            raise SeedError(f"{where}.participants: must be >= 0")
        messages: Any = item.get("messages", 0)
        if isinstance(messages, bool) or not isinstance(messages, int | list):
            raise SeedError(f"{where}.messages: must be a count or a list of messages")
        if isinstance(messages, int):
            if messages < 0:
                raise SeedError(f"{where}.messages: must be >= 0")
        else:
            explicit = []
            for k, m in enumerate(messages):
                mw = f"{where}.messages[{k}]"
                mm = _map(m, mw)
                _keys(mw, mm, {"author", "body", "date_created"})
                step = (updated - created) * (k + 1) / (len(messages) + 1)
                explicit.append(MessageSpec(_str(mm, "author", mw), _str(mm, "body", mw),
                                            _date(mm, "date_created", mw, created + step)))
            if any(a.date_created > b_.date_created for a, b_ in pairwise(explicit)):
                raise SeedError(f"{where}.messages: dates must not decrease (messages are "
                                f"indexed in creation order)")
            messages = explicit
        b.conversation(
            service_sid=service_sid, state=state, created=created, updated=updated,
            participants=participants, messages=messages,
            friendly_name=item.get("friendly_name"), unique_name=item.get("unique_name"),
            attributes=_attributes(item, where),
        )
    store_ids: dict[str, str] = {}
    for i, raw in enumerate(_list(data, "stores")):
        where = f"stores[{i}]"
        item = _map(raw, where)
        _keys(where, item, {"name"})
        name = _str(item, "name", where)
        if not name.replace("-", "").isalnum() or len(name) > 64:
            raise SeedError(f"{where}.name: must match ^[a-zA-Z0-9-]+$ (max 64), not {name!r}")
        store_ids[name] = b.store(name).id
    config_ids: dict[str, str] = {}
    for i, raw in enumerate(_list(data, "configurations")):
        where = f"configurations[{i}]"
        item = _map(raw, where)
        _keys(where, item, {"name", "store", "date_created"})
        name = _str(item, "name", where)
        store = item.get("store")
        if store is not None and store not in store_ids \
                and not (isinstance(store, str) and STORE_ID.match(store)):
                raise SeedError(f"{where}.store: unknown store {store!r}")
        store_id = store_ids.get(store, store) if store else "mem_store_00000000000000000000000000"
        cfg = b.configuration(name, str(store_id), _date(item, "date_created", where,
                                                         clock - 100 * DAY))
        config_ids[name] = cfg.id
    for i, raw in enumerate(_list(data, "conversations_v2")):
        where = f"conversations_v2[{i}]"
        item = _map(raw, where)
        _keys(where, item, {"configuration", "status", "date_created", "age_days", "name"})
        cfg_name = item.get("configuration")
        if cfg_name is None and config_ids:
            cfg_id = next(iter(config_ids.values()))
        elif cfg_name in config_ids:
            cfg_id = config_ids[cfg_name]
        else:
            raise SeedError(f"{where}.configuration: unknown configuration {cfg_name!r}")
        status = item.get("status", "ACTIVE")
        if status not in V2_STATUSES:
            raise SeedError(f"{where}.status: must be one of {list(V2_STATUSES)}, not {status!r}")
        if "age_days" in item:
            created = clock - _num(item, "age_days", where) * DAY
        else:
            created = _date(item, "date_created", where, clock - 10 * DAY)
        b.conversation_v2(cfg_id, status, created, item.get("name"))
    return b.build()


def _keys(where: str, item: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(item) - allowed)
    if extra:
        raise SeedError(f"{where}: unknown field(s) {extra}; allowed: {sorted(allowed)}")


def _map(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SeedError(f"{where}: must be a mapping, not {type(raw).__name__}")
    return raw


def _attributes(item: Mapping[str, Any], where: str) -> str | None:
    """A seeded conversation's ``attributes``: a mapping (stored as its JSON), or a string
    stored as given (Twilio's form; not checked, so a test can seed one that is not JSON)."""
    value = item.get("attributes")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value)
    raise SeedError(f"{where}.attributes: must be a mapping or a string, not {value!r}")


def _list(data: Mapping[str, Any], key: str, where: str = "seed") -> list[Any]:
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeedError(f"{where}.{key}: must be a list, not {type(value).__name__}")
    return value


def _str(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise SeedError(f"{where}.{key}: must be a non-empty string")
    return value


def _int(item: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SeedError(f"{where}.{key}: must be an integer, not {value!r}")
    return value


def _num(item: Mapping[str, Any], key: str, where: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SeedError(f"{where}.{key}: must be a number >= 0, not {value!r}")
    return float(value)


def _date(item: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = item.get(key)
    if value is None:
        return default
    # YAML turns unquoted timestamps into datetime objects already.
    if hasattr(value, "timestamp"):
        stamp = value.timestamp()
        return float(stamp)
    parsed = parse_iso(value) if isinstance(value, str) else None
    if parsed is None:
        raise SeedError(f"{where}.{key}: must be an ISO 8601 date-time, not {value!r}")
    return parsed


__all__ = ["Dataset", "SeedError", "UserSpec", "dataset_from_mapping", "generate", "load_seed"]
