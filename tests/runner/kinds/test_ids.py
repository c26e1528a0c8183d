"""ID validation: the gate every ID passes before it may appear in a URL path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.kinds.base import ResourceKind, Target
from runner.kinds.ids import ID_PATTERNS, validate_id
from runner.kinds.registry import by_spec

HEX = "0123456789abcdef" * 2
CH = "CH" + HEX
IM = "IM" + HEX
MB = "MB" + HEX
IS = "IS" + HEX
TTID = "01h9d8r0vte3hz8tykdj329t7r"
MESSAGES = by_spec("messages")
PARTICIPANTS = by_spec("participants")
CONVERSATIONS = by_spec("conversations", "v1")
CONVERSATIONS_V2 = by_spec("conversations", "v2")
MEMORY_STORES = by_spec("memory_stores")


@pytest.mark.parametrize(
    ("kind_key", "value"),
    [
        pytest.param("conversation_v1", CH, id="conversation-v1"),
        pytest.param("conversation_v1", "CH" + HEX.upper(), id="conversation-v1-upper-hex"),
        pytest.param("message", IM, id="message"),
        pytest.param("participant", MB, id="participant"),
        pytest.param("service", IS, id="service"),
        pytest.param("account", "AC" + HEX, id="account"),
        pytest.param("api_key", "SK" + HEX, id="api-key"),
        pytest.param("conversation_v2", "conv_conversation_" + TTID, id="conversation-v2"),
        pytest.param("configuration", "conv_configuration_" + TTID, id="configuration-conv"),
        pytest.param("configuration", "cfg_configuration_" + TTID, id="configuration-cfg"),
        pytest.param("memory_store", "mem_store_" + TTID, id="memory-store"),
        pytest.param("memory_store", "mem_service_" + TTID, id="memory-service"),
    ],
)
def test_valid_ids_pass_unchanged(kind_key: str, value: str) -> None:
    """A well-formed ID of each kind is returned as it is."""
    assert validate_id(kind_key, value) == value


@pytest.mark.parametrize(
    ("kind_key", "value", "fragment"),
    [
        pytest.param(
            "conversation_v1",
            "CH123",
            "'CH123' is not a Conversation SID (CH followed by 32 hex digits)",
            id="short",
        ),
        pytest.param(
            "conversation_v1", "../../v1/Accounts", "is not a Conversation SID", id="dots"
        ),
        pytest.param("conversation_v1", "CH%2F..", "is not a Conversation SID", id="url-encoded"),
        pytest.param("conversation_v1", CH + "\n", "remove the surrounding spaces", id="newline"),
        pytest.param("conversation_v1", " " + CH, "remove the surrounding spaces", id="space"),
        pytest.param("conversation_v1", CH[:-1] + "g", "is not a Conversation SID", id="non-hex"),
        pytest.param("conversation_v1", CH + "0", "is not a Conversation SID", id="too-long"),
        pytest.param(
            "conversation_v1",
            IS,
            "IS... is a Service SID; a Conversation SID starts with CH",
            id="service-for-conversation",
        ),
        pytest.param(
            "message",
            MB,
            "MB... is a Participant SID; a Message SID starts with IM",
            id="mb-for-im",
        ),
        pytest.param(
            "conversation_v2", "conv_conversation_8" + TTID[1:], "first 0-7", id="ttid-first-char"
        ),
        pytest.param(
            "conversation_v2", "conv_conversation_" + TTID.upper(), "lower-case", id="ttid-upper"
        ),
        pytest.param("memory_store", "mem_profile_" + TTID, "Memory store ID", id="mem-profile"),
        pytest.param("configuration", "_configuration_" + TTID, "Configuration ID", id="no-prefix"),
    ],
)
def test_invalid_ids_are_refused_with_the_expected_shape(
    kind_key: str, value: str, fragment: str
) -> None:
    """A malformed ID raises ValueError saying what the ID should look like."""
    with pytest.raises(ValueError) as info:
        validate_id(kind_key, value)
    assert fragment in str(info.value)


def test_long_values_are_shortened_in_messages() -> None:
    """An enormous bad value does not flood the error message."""
    with pytest.raises(ValueError) as info:
        validate_id("message", "x" * 10_000)
    assert len(str(info.value)) < 200


@given(st.text(max_size=60))
def test_nothing_that_passes_can_alter_a_path(value: str) -> None:
    """Whatever the text, an ID that passes holds only letters, digits and underscores."""
    for kind_key in ID_PATTERNS:
        try:
            validate_id(kind_key, value)
        except ValueError:
            continue
        assert value.isascii()
        assert all(c.isalnum() or c == "_" for c in value)


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        pytest.param(MESSAGES, f"{CH}/{IM}", Target(MESSAGES, IM, CH), id="msg"),
        pytest.param(PARTICIPANTS, f"{CH}/{MB}", Target(PARTICIPANTS, MB, CH), id="part"),
        pytest.param(CONVERSATIONS, CH, Target(CONVERSATIONS, CH), id="conv-v1"),
        pytest.param(
            CONVERSATIONS_V2,
            "conv_conversation_" + TTID,
            Target(CONVERSATIONS_V2, "conv_conversation_" + TTID),
            id="conv-v2",
        ),
        pytest.param(
            MEMORY_STORES,
            "mem_store_" + TTID,
            Target(MEMORY_STORES, "mem_store_" + TTID),
            id="store",
        ),
    ],
)
def test_parse_id_accepts_the_spec_forms(kind: ResourceKind, text: str, expected: Target) -> None:
    """Spec entries parse into targets, with the conversation split off for messages."""
    assert kind.parse_id(text) == expected


@pytest.mark.parametrize(
    ("kind", "text", "fragment"),
    [
        pytest.param(MESSAGES, IM, "needs its conversation: write it as CH.../IM...", id="bare"),
        pytest.param(MESSAGES, f"{CH}/{IM}/x", "is not CH.../IM...", id="extra-part"),
        pytest.param(MESSAGES, f"{IS}/{IM}", "is a Service SID", id="service-parent"),
        pytest.param(MESSAGES, "../../v1/Accounts", "is not CH.../IM...", id="traversal"),
        pytest.param(PARTICIPANTS, f"{CH}/{IM}", "is not a Participant SID", id="wrong-child"),
        pytest.param(CONVERSATIONS, "conv_conversation_" + TTID, "v2 Conversation", id="v2"),
    ],
)
def test_parse_id_refuses_bad_entries(kind: ResourceKind, text: str, fragment: str) -> None:
    """A bad spec entry raises ValueError naming the expected form."""
    with pytest.raises(ValueError) as info:
        kind.parse_id(text)
    assert fragment in str(info.value)


def test_target_requires_the_parent_for_messages() -> None:
    """Manifest rows for messages without a conversation SID are refused."""
    with pytest.raises(ValueError, match="need their conversation SID"):
        MESSAGES.target(IM)


def test_target_is_small_and_keyed() -> None:
    """A target has slots and a stable key: its kind's log code and its own ID."""
    message = Target(MESSAGES, IM, CH)
    assert not hasattr(message, "__dict__")
    assert message.key == f"m:{IM}"
    assert Target(CONVERSATIONS, CH).key == f"c1:{CH}"
    assert Target(MEMORY_STORES, "mem_store_" + TTID).key == "ms:mem_store_" + TTID
