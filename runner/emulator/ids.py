"""Twilio identifiers: minting and validation against the specs' patterns.

v1 SIDs are a two-letter prefix plus 32 hex digits. v2 and Memory use TTIDs: a prefix plus 26
Crockford base-32 characters (lower case, no ``i l o u``) encoding 128 bits, so the first
character is always 0-7; the 48 high bits are a millisecond timestamp as in UUIDv7/TypeID, which
makes IDs sort by creation time like Twilio's do.

Message SIDs are never stored: they are a reversible 128-bit permutation of (dataset tag,
conversation number, message index), so a million messages cost no memory for their SIDs and a
SID from a request maps back to its position in O(1).
"""

from __future__ import annotations

import random
import re
from typing import Final

CROCKFORD: Final = "0123456789abcdefghjkmnpqrstvwxyz"
_CROCKFORD_INDEX: Final = {c: i for i, c in enumerate(CROCKFORD)}

# Patterns copied from the specs (twilio-api.md section 6). The specs accept any [0-9a-z] after the
# first TTID character; minting is stricter (Crockford only) and validation follows the spec.
ACCOUNT_SID: Final = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_SID: Final = re.compile(r"^SK[0-9a-fA-F]{32}$")
CONVERSATION_SID: Final = re.compile(r"^CH[0-9a-fA-F]{32}$")
MESSAGE_SID: Final = re.compile(r"^IM[0-9a-fA-F]{32}$")
PARTICIPANT_SID: Final = re.compile(r"^MB[0-9a-fA-F]{32}$")
SERVICE_SID: Final = re.compile(r"^IS[0-9a-fA-F]{32}$")
USER_SID: Final = re.compile(r"^US[0-9a-fA-F]{32}$")
STORE_ID: Final = re.compile(r"^mem_(store|service)_[0-7][0-9a-z]{25}$")
CONVERSATION_V2_ID: Final = re.compile(r"^conv_conversation_[0-7][0-9a-z]{25}$")
# No pattern in the v2 spec for these two; the emulator's own minted shape is the contract.
CONFIGURATION_ID: Final = re.compile(r"^conv_configuration_[0-7][0-9a-z]{25}$")
V2_OPERATION_ID: Final = re.compile(r"^proc_job_[0-7][0-9a-z]{25}$")
MEMORY_OPERATION_ID: Final = re.compile(r"^mem_operation_[0-7][0-9a-z]{25}$")
# Idempotency-Key, [V2] components.parameters.IdempotencyKeyHeader.
IDEMPOTENCY_KEY: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

_MASK128: Final = (1 << 128) - 1
# Odd multipliers are invertible modulo 2**128; the inverse is computed once.
_MUL: Final = 0x9E3779B97F4A7C15F39CC0605CEDC835
_MUL_INV: Final = pow(_MUL, -1, 1 << 128)


def encode_ttid(value: int) -> str:
    """Render a 128-bit integer as 26 Crockford base-32 characters (first one 0-7)."""
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def decode_ttid(text: str) -> int | None:
    """Invert :func:`encode_ttid`; ``None`` when a character is outside Crockford's alphabet."""
    value = 0
    for char in text:
        digit = _CROCKFORD_INDEX.get(char)
        if digit is None:
            return None
        value = (value << 5) | digit
    return value


class IdMinter:
    """Deterministic source of new IDs: same seed, same IDs."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"ids:{seed}")

    def sid(self, prefix: str) -> str:
        """A v1 SID: two-letter prefix plus 32 lowercase hex digits."""
        return f"{prefix}{self._rng.getrandbits(128):032x}"

    def ttid(self, prefix: str, unix_ms: int) -> str:
        """A TTID whose high 48 bits are ``unix_ms`` (so IDs sort by creation time)."""
        value = ((unix_ms & ((1 << 48) - 1)) << 80) | self._rng.getrandbits(80)
        return prefix + encode_ttid(value)


def _mix(value: int) -> int:
    value = (value * _MUL) & _MASK128
    value ^= value >> 64
    return (value * _MUL) & _MASK128


def _unmix(value: int) -> int:
    value = (value * _MUL_INV) & _MASK128
    value ^= value >> 64
    return (value * _MUL_INV) & _MASK128


class PositionalSids:
    """Reversible SIDs for a (conversation number, item index) grid, keyed by a 64-bit tag.

    A SID that does not decode to this tag is simply unknown; nothing is stored per item.
    """

    def __init__(self, prefix: str, tag: int) -> None:
        self.prefix = prefix
        self._tag = tag & ((1 << 64) - 1)

    def sid(self, conversation_no: int, index: int) -> str:
        """The SID of item ``index`` in conversation ``conversation_no``."""
        packed = (self._tag << 64) | ((conversation_no & 0xFFFFFFFF) << 32) | (index & 0xFFFFFFFF)
        return f"{self.prefix}{_mix(packed):032x}"

    def position(self, sid: str) -> tuple[int, int] | None:
        """Invert :meth:`sid`; ``None`` for a SID this grid never minted."""
        if len(sid) != 34 or not sid.startswith(self.prefix):
            return None
        try:
            packed = _unmix(int(sid[2:], 16))
        except ValueError:
            return None
        if packed >> 64 != self._tag:
            return None
        return (packed >> 32) & 0xFFFFFFFF, packed & 0xFFFFFFFF
