"""Realistic-looking personal data for seeded messages and participants.

Everything is a pure function of integers so a million message bodies need no storage: a page
renders its bodies on demand. The pools are public-domain-ish common names; phone numbers use the
555-01xx range reserved for fiction.
"""

from __future__ import annotations

from collections.abc import Callable
from string import Formatter
from typing import Final

FIRST: Final = (
    "Maria", "James", "Aisha", "Wei", "Sofia", "Liam", "Priya", "Mateo", "Olga", "Kwame",
    "Hannah", "Diego", "Yuki", "Fatima", "Noah", "Elena", "Omar", "Chloe", "Ravi", "Ingrid",
)
LAST: Final = (
    "Garcia", "Smith", "Okafor", "Zhang", "Rossi", "Murphy", "Patel", "Fernandez", "Ivanova",
    "Mensah", "Schmidt", "Lopez", "Tanaka", "Haddad", "Wilson", "Petrova", "Nasser", "Dubois",
    "Sharma", "Larsen",
)
STREETS: Final = (
    "Maple Avenue", "Oak Street", "Harbor Road", "Elm Court", "Sunset Boulevard", "Mill Lane",
    "Cedar Drive", "Park Place",
)
CITIES: Final = ("Springfield", "Riverton", "Lakewood", "Fairview", "Georgetown", "Ashland")
DOMAINS: Final = ("example.com", "mail.example.org", "inbox.example.net")
TEMPLATES: Final = (
    "Hi {first}, your appointment is confirmed for Tuesday at 3pm.",
    "Please ship it to {street_no} {street}, {city}.",
    "You can reach me at {phone} after 6pm.",
    "My email is {email} if you need the invoice.",
    "Thanks {first} {last}, the technician will call {phone}.",
    "Card ending {card} was charged $ {amount}.",
    "Can you update my address to {street_no} {street}, {city}?",
    "Hello, this is {first} {last}. I'd like to reschedule.",
    "Send the receipt to {email}, please.",
    "My date of birth is {dob} for the verification.",
)


def _h(*parts: int) -> int:
    """A cheap deterministic 64-bit mix (splitmix64 over the parts)."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
        x = x * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x


def person(*key: int) -> tuple[str, str]:
    """A (first, last) name pair for a key."""
    x = _h(1, *key)
    return FIRST[x % len(FIRST)], LAST[(x >> 8) % len(LAST)]


def email(*key: int) -> str:
    """An email address for a key."""
    first, last = person(*key)
    x = _h(2, *key)
    return f"{first.lower()}.{last.lower()}{x % 100}@{DOMAINS[(x >> 8) % len(DOMAINS)]}"


def phone(*key: int) -> str:
    """An E.164 number in the 555-01xx fiction range."""
    x = _h(3, *key)
    area = (201, 312, 415, 512, 617, 646, 718, 805)[x % 8]
    return f"+1{area}55501{(x >> 8) % 100:02d}"


def body(*key: int) -> str:
    """A message body that carries names, addresses, emails or phone numbers."""
    x = _h(4, *key)
    template, named, fields = _TEMPLATE_FIELDS[x % len(TEMPLATES)]
    # Only what the template says is computed: a listing renders every body of its page, and a
    # name, phone and email each cost a hash or two that most templates never show.
    values: dict[str, object] = {}
    if named:
        values["first"], values["last"] = person(*key, 7)
    for name in fields:
        values[name] = _VALUE[name](key, x)
    return template.format_map(values)


_NAME: Final = frozenset(("first", "last"))
_VALUE: Final[dict[str, Callable[[tuple[int, ...], int], object]]] = {
    "street_no": lambda _key, x: 100 + (x >> 8) % 900,
    "street": lambda _key, x: STREETS[(x >> 20) % len(STREETS)],
    "city": lambda _key, x: CITIES[(x >> 24) % len(CITIES)],
    "phone": lambda key, _x: phone(*key, 7),
    "email": lambda key, _x: email(*key, 7),
    "card": lambda _key, x: f"{(x >> 28) % 10000:04d}",
    "amount": lambda _key, x: f"{(x >> 40) % 500}.{(x >> 50) % 100:02d}",
    "dob": lambda _key, x: (
        f"19{50 + (x >> 32) % 50}-{1 + (x >> 36) % 12:02d}-{1 + (x >> 44) % 28:02d}"
    ),
}

def _fields(template: str) -> tuple[str, bool, tuple[str, ...]]:
    """``template``, whether it shows a name, and the other fields it shows."""
    names = {name for _, name, _, _ in Formatter().parse(template) if name}
    return template, bool(names & _NAME), tuple(sorted(names - _NAME))


_TEMPLATE_FIELDS: Final = tuple(_fields(t) for t in TEMPLATES)
