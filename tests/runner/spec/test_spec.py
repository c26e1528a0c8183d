"""The job spec and its time bounds: parsing, validation messages, fingerprints, frozen times."""

from __future__ import annotations

import contextlib
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from runner.errors import SpecError
from runner.kinds.base import Target
from runner.kinds.conversations import ConversationsTarget
from runner.kinds.messages import MessagesTarget, MessagesWhere
from runner.kinds.registry import by_spec
from runner.kinds.timespec import (
    Bound,
    ResolvedTimes,
    duration_seconds,
    parse_bound,
    resolve_times,
)
from runner.kinds.v1 import ConversationFilter
from runner.spec.jobspec import (
    JobSpec,
    describe_changes,
    load_spec,
    parse_spec,
    spec_fingerprint,
)

HEX = "0123456789abcdef" * 2
CH = "CH" + HEX
IM = "IM" + HEX
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

FULL = f"""
version: 1
name: retention-90d
service: IS{HEX}
webhooks: false
targets:
  - kind: messages
    where:
      conversations: {{state: [closed, inactive], updated_before: 30d}}
      created_before: 90d
  - kind: participants
    where: {{conversations: [{CH}]}}
  - kind: conversations
    ids: [{CH}]
  - kind: conversations
    api: v2
    where: {{status: CLOSED, created_before: "2026-01-31"}}
  - kind: configurations
    where: {{all: true}}
  - kind: memory_stores
    ids: [mem_store_01h9d8r0vte3hz8tykdj329t7r]
  - kind: messages
    ids: ["{CH}/{IM}"]
limits:
  concurrency: 10
  conversations: {{rate: 50, burst: 5, concurrency: 8}}
retry: {{max_attempts: 3}}
operations: {{poll_interval: 1, timeout: 60}}
safety: {{max_deletions: 1000}}
"""
MESSAGES = by_spec("messages")
PARTICIPANTS = by_spec("participants")
CONVERSATIONS = by_spec("conversations", "v1")
CONVERSATIONS_V2 = by_spec("conversations", "v2")
MEMORY_STORES = by_spec("memory_stores")


def parse(text: str, base_dir: Path = Path(".")) -> JobSpec:
    return parse_spec(textwrap.dedent(text), base_dir=base_dir)


def problems(text: str, base_dir: Path = Path(".")) -> tuple[str, ...]:
    with pytest.raises(SpecError) as info:
        parse(text, base_dir)
    return info.value.problems


MINIMAL = "version: 1\nname: j\ntargets:\n  - {kind: memory_stores, where: {all: true}}\n"


def test_full_spec_parses_into_typed_frozen_models() -> None:
    """Every section of a full spec lands in its typed model, and the models are frozen."""
    spec = parse(FULL)
    assert spec.name == "retention-90d"
    assert spec.webhooks is False
    assert [t.kind for t in spec.targets] == [
        "messages",
        "participants",
        "conversations",
        "conversations",
        "configurations",
        "memory_stores",
        "messages",
    ]
    first = spec.targets[0]
    assert isinstance(first, MessagesTarget)
    assert isinstance(first.where, MessagesWhere)
    assert isinstance(first.where.conversations, ConversationFilter)
    assert first.where.conversations.state == ("closed", "inactive")
    assert spec.targets[1].where is not None
    assert isinstance(spec.targets[2], ConversationsTarget)
    assert spec.targets[2].api == "v1"
    assert spec.targets[3].api == "v2"
    assert spec.limits.conversations.burst == 5
    assert spec.limits.per_conversation_rate == 30
    assert spec.retry.max_attempts == 3
    assert spec.retry.max_delay == 30
    assert spec.safety.max_failure_rate == 0.5
    with pytest.raises(ValidationError):
        spec.name = "other"


def test_explicit_ids_are_parsed_into_target_ids() -> None:
    """ids entries come back as targets, the conversation split off for messages."""
    spec = parse(FULL)
    assert spec.targets[6].explicit_ids() == [Target(MESSAGES, IM, CH)]
    assert spec.targets[2].explicit_ids() == [Target(CONVERSATIONS, CH)]
    assert spec.targets[0].explicit_ids() == []


def test_single_values_become_lists() -> None:
    """`state: closed` and a single SID under conversations mean lists of one."""
    spec = parse(
        f"""
        version: 1
        name: j
        targets:
          - kind: participants
            where: {{conversations: {CH}}}
          - kind: conversations
            where: {{state: closed}}
        """
    )
    assert spec.targets[0].where.conversations == (CH,)  # type: ignore[union-attr]
    assert spec.targets[1].where.state == ("closed",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: message\n    ids: [x]\n",
            "targets[0].kind: 'message' is not one of messages, participants, conversations, "
            "configurations, memory_stores, users, identity (did you mean 'messages'?)",
            id="kind-did-you-mean",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n    where:\n"
            "      created_before: 90x\n",
            "targets[0].where.created_before: '90x' is not a date or a duration like 90d; a "
            "duration is a whole number and a unit (s, min, h, d, w, mo = calendar months, "
            "y = calendar years) or ISO-8601 (P3M, P1Y2M, PT12H) (line 6)",
            id="bad-duration-with-line",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n    wehre: {all: true}\n",
            "targets[0].wehre: unknown key (did you mean 'where'?)",
            id="unknown-key",
        ),
        pytest.param(
            "version: 1\nnmae: j\ntargets: []\n",
            "nmae: unknown key (did you mean 'name'?)",
            id="unknown-top-key",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: participants\n"
            "    where: {conversations: all, created_before: 9d}\n",
            "participants can only be selected by their conversations",
            id="participants-by-age",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: messages\n    api: v1\n"
            f"    ids: ['{CH}/{IM}']\n",
            "targets[0].api: applies only to kind conversations",
            id="api-on-messages",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n    api: v2\n"
            "    where: {state: closed}\n",
            "targets[0].where.state: is for api: v1",
            id="state-on-v2",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n    api: v2\n"
            "    where: {status: closed}\n",
            "(did you mean 'CLOSED'?)",
            id="status-case",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n    where: {}\n",
            "to delete every conversation write `all: true`",
            id="empty-where",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: messages\n    where: {conversations: {}}\n",
            "write `conversations: all` to say so",
            id="empty-conversation-filter",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n",
            "targets[0]: says nothing to delete",
            id="no-selector",
        ),
        pytest.param(
            f"version: 1\nname: j\ntargets:\n  - kind: conversations\n    ids: [{CH}]\n"
            "    from_file: x.csv\n",
            "targets[0]: gives ids and from_file",
            id="two-selectors",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n"
            "    where: {created_after: 2026-02-01, created_before: 2026-01-01}\n",
            "is not earlier than created_before",
            id="inverted-bounds",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: conversations\n"
            "    where: {created_after: 30d, created_before: 90d}\n",
            "nothing can match",
            id="inverted-relative-bounds",
        ),
        pytest.param(
            MINIMAL + "retry: {base_delay: 5, max_delay: 1}\n",
            "retry.max_delay: 1.0 is less than base_delay 5.0",
            id="retry-delays",
        ),
        pytest.param(
            MINIMAL + "operations: {poll_interval: 5, timeout: 1}\n",
            "operations.timeout: 1.0 is shorter than poll_interval",
            id="operation-timeout",
        ),
        pytest.param(
            MINIMAL + "limits: {concurrency: true}\n",
            "limits.concurrency: True is not a whole number",
            id="bool-for-int",
        ),
        pytest.param(
            MINIMAL + "webhooks: no\n", "webhooks: 'no' is not true or false", id="yaml11-bool"
        ),
        pytest.param(
            MINIMAL + "safety: {max_failure_rate: 0}\n",
            "safety.max_failure_rate: 0 is out of range: it must be greater than 0",
            id="failure-rate-zero",
        ),
        pytest.param(
            MINIMAL + "limits: {memory: {burst: 0}}\n",
            "limits.memory.burst: 0 is out of range: it must be at least 1",
            id="burst-zero",
        ),
        pytest.param(
            MINIMAL + f"service: CH{HEX}\n",
            "service: 'CH",
            id="service-pattern",
        ),
        pytest.param("version: 1\nname: j\n", "targets: is required", id="missing-targets"),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: messages\n    where: {conversations: 5}\n",
            "targets[0].where.conversations: expected 'all', a list of Conversation SIDs",
            id="selector-type",
        ),
        pytest.param(
            "version: 1\nname: j\ntargets:\n  - kind: messages\n"
            "    where: {conversations: {stat: closed}}\n",
            "targets[0].where.conversations.stat: unknown key (did you mean 'state'?)",
            id="filter-typo",
        ),
        pytest.param("name: j\ntargets: []\n", "version: is required", id="missing-version"),
    ],
)
def test_problems_name_the_path_and_the_fix(text: str, fragment: str) -> None:
    """Each invalid spec yields a message naming the YAML path and what would be valid."""
    found = problems(text)
    assert any(fragment in p for p in found), found


def test_all_problems_are_reported_at_once() -> None:
    """Problems in different targets and sections are all listed, not just the first."""
    found = problems(
        "version: 1\nname: 'bad name'\ntargets:\n  - kind: message\n    ids: [x]\n"
        "  - kind: conversations\n    ids: [CH123]\nlimits: {concurrency: 0}\n"
    )
    assert [p.split(":")[0] for p in found] == [
        "name",
        "targets[0].kind",
        "targets[1].ids[0]",
        "limits.concurrency",
    ]


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_any_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    """Arbitrary text never raises anything but SpecError."""
    with contextlib.suppress(SpecError):
        parse_spec(text, base_dir=Path("."))


_yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["messages", "conversations", "all", "v2", "90d", CH, f"{CH}/{IM}"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "api",
                    "ids",
                    "from_file",
                    "where",
                    "conversations",
                    "state",
                    "all",
                    "created_before",
                    "limits",
                    "rate",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(
    targets=st.lists(_yaml_values, max_size=3),
    extra=st.dictionaries(st.text(max_size=8), _yaml_values, max_size=2),
)
@settings(max_examples=200, deadline=None)
def test_structured_garbage_gives_a_spec_or_a_spec_error(
    tmp_path_factory: pytest.TempPathFactory, targets: list[object], extra: dict[str, object]
) -> None:
    """Spec-shaped data with arbitrary values never raises anything but SpecError."""
    import json

    text = json.dumps({"version": 1, "name": "j", "targets": targets, **extra}, default=str)
    try:
        parse_spec(text, base_dir=tmp_path_factory.getbasetemp())
    except SpecError as exc:
        assert exc.problems
        assert all(isinstance(p, str) and p for p in exc.problems)


def test_load_spec_reads_manifests_relative_to_the_spec(tmp_path: Path) -> None:
    """from_file is resolved against the spec's directory, validated, and its facts kept."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "ids.csv").write_text(f"id,conversation_sid\n{IM},{CH}\n")
    spec_path = tmp_path / "jobs" / "job.yaml"
    spec_path.write_text(
        "version: 1\nname: j\ntargets:\n  - kind: messages\n    from_file: ids.csv\n"
    )
    spec = load_spec(spec_path)
    target = spec.targets[0]
    assert target.manifest is not None and target.manifest.count == 1
    assert target.manifest_path == tmp_path / "jobs" / "ids.csv"
    assert list(target.iter_manifest()) == [Target(MESSAGES, IM, CH)]
    assert spec.canonical()["targets"][0]["manifest"]["count"] == 1


def test_manifest_problems_are_reported_with_other_problems(tmp_path: Path) -> None:
    """A bad manifest row and a bad spec key are reported together."""
    (tmp_path / "ids.jsonl").write_text('"bad"\n')
    found = problems(
        "version: 1\nname: j\nbogus: 1\ntargets:\n  - kind: memory_stores\n"
        "    from_file: ids.jsonl\n",
        tmp_path,
    )
    assert any(p.startswith("bogus: unknown key") for p in found)
    assert "targets[0].from_file: ids.jsonl line 1: 'bad' is not a Memory store ID" in found[-1]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        pytest.param("missing.yaml", None, "no such job spec file", id="missing"),
        pytest.param("bin.yaml", b"\xff\xfe", "is not UTF-8 text", id="binary"),
    ],
)
def test_load_spec_file_problems(
    tmp_path: Path, name: str, content: bytes | None, fragment: str
) -> None:
    """Unreadable spec files raise SpecError naming the file."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError, match=fragment):
        load_spec(path)


def test_fingerprint_is_stable_and_ignores_explicit_defaults() -> None:
    """The same job written with or without its defaults has one fingerprint."""
    explicit = MINIMAL + "limits: {concurrency: 64}\nretry: {max_attempts: 8}\n"
    assert spec_fingerprint(parse(MINIMAL)) == spec_fingerprint(parse(explicit))
    assert spec_fingerprint(parse(MINIMAL)) != spec_fingerprint(
        parse(MINIMAL + "limits: {concurrency: 63}\n")
    )


def test_fingerprint_changes_with_manifest_content(tmp_path: Path) -> None:
    """Editing a manifest changes the fingerprint even though the spec text is the same."""
    store = "mem_store_01h9d8r0vte3hz8tykdj329t7r"
    manifest = tmp_path / "s.jsonl"
    text = "version: 1\nname: j\ntargets:\n  - {kind: memory_stores, from_file: s.jsonl}\n"
    manifest.write_text(f'"{store}"\n')
    before = spec_fingerprint(parse(text, tmp_path))
    manifest.write_text(f'"{store}"\n"{store[:-1]}0"\n')
    assert spec_fingerprint(parse(text, tmp_path)) != before


def test_describe_changes_names_changed_paths() -> None:
    """Differences between canonical forms are listed by YAML path."""
    old = parse(FULL).canonical()
    new = parse(
        FULL.replace("created_before: 90d", "created_before: 60d").replace(
            "concurrency: 10", "concurrency: 12"
        )
    ).canonical()
    assert describe_changes(old, new) == [
        "targets[0].where.created_before: '90d' -> '60d'",
        "limits.concurrency: 10 -> 12",
    ]
    assert describe_changes(old, old) == []


def test_canonical_absolute_bounds_are_normalised() -> None:
    """A date and the equivalent UTC datetime are the same bound in canonical form."""
    base = (
        "version: 1\nname: j\ntargets:\n  - kind: configurations\n"
        "    where: {{created_before: {}}}\n"
    )
    a = parse(base.format("2026-01-31")).canonical()
    b = parse(base.format("'2026-01-31T01:00:00+01:00'")).canonical()
    assert a == b
    assert a["targets"][0]["where"]["created_before"] == "2026-01-31T00:00:00Z"


# --- timespec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC), id="date"),
        pytest.param("2026-01-31T10:00:00Z", datetime(2026, 1, 31, 10, tzinfo=UTC), id="zulu"),
        pytest.param(
            "2026-01-31T10:00:00+02:00", datetime(2026, 1, 31, 8, tzinfo=UTC), id="offset"
        ),
        pytest.param("2026-01-31T10:00:00", datetime(2026, 1, 31, 10, tzinfo=UTC), id="naive-utc"),
        pytest.param("90d", NOW - timedelta(days=90), id="days"),
        pytest.param("12h", NOW - timedelta(hours=12), id="hours"),
        pytest.param("30min", NOW - timedelta(minutes=30), id="minutes"),
        pytest.param("45s", NOW - timedelta(seconds=45), id="seconds"),
        pytest.param("2w", NOW - timedelta(weeks=2), id="weeks"),
        pytest.param("3mo", datetime(2025, 12, 1, 12, tzinfo=UTC), id="calendar-months"),
        pytest.param("1y", datetime(2025, 3, 1, 12, tzinfo=UTC), id="calendar-year"),
        pytest.param("P3M", datetime(2025, 12, 1, 12, tzinfo=UTC), id="iso-months"),
        pytest.param("P1Y2M", datetime(2025, 1, 1, 12, tzinfo=UTC), id="iso-years-months"),
        pytest.param("PT12H", NOW - timedelta(hours=12), id="iso-hours"),
        pytest.param("P1MT6H", datetime(2026, 2, 1, 6, tzinfo=UTC), id="iso-months-then-hours"),
        pytest.param("P2W", NOW - timedelta(weeks=2), id="iso-weeks"),
    ],
)
def test_bounds_resolve_to_aware_utc(text: str, expected: datetime) -> None:
    """Absolute and relative bounds resolve to the expected UTC instant."""
    moment = parse_bound(text).resolve(NOW)
    assert moment == expected
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("90x", "'90x' is not a date or a duration like 90d", id="unit"),
        pytest.param("-5d", "cannot be negative", id="negative"),
        pytest.param("0d", "is a zero duration", id="zero"),
        pytest.param("2026-02-30", "'2026-02-30' is not a valid date", id="impossible-date"),
        pytest.param("2026-13-01", "is not a valid date", id="month-13"),
        pytest.param("99999999999d", "more than 100 years", id="huge"),
        pytest.param("d", "is not a date or a duration", id="no-number"),
        pytest.param("", "is not a date or a duration", id="empty"),
        pytest.param("3m", "did you mean 3mo (months) or 3min (minutes)?", id="bare-m"),
        pytest.param("90x", "s, min, h, d, w, mo = calendar months, y", id="units-listed"),
        pytest.param("P1.5M", "a fraction of a month", id="iso-fraction"),
        pytest.param("-P3M", "cannot be negative", id="iso-negative"),
        pytest.param("PT0S", "is a zero duration", id="iso-zero"),
        pytest.param("P3X", "is not an ISO-8601 duration", id="iso-malformed"),
        pytest.param("101y", "more than 100 years", id="too-many-years"),
    ],
)
def test_bad_bounds_say_what_a_bound_looks_like(text: str, fragment: str) -> None:
    """Malformed bounds raise ValueError naming the accepted forms."""
    with pytest.raises(ValueError) as info:
        parse_bound(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("after", "before", "empty"),
    [
        pytest.param("3mo", "1y", True, id="months-after-a-year"),
        pytest.param("1y", "3mo", False, id="a-year-then-months"),
        pytest.param("1mo", "30d", False, id="empty-only-in-some-months"),
        pytest.param("P2M", "60d", False, id="iso-months-around-days"),
        pytest.param("P2M", "70d", True, id="iso-months-always-short"),
    ],
)
def test_calendar_bounds_are_refused_as_inverted_only_when_always_empty(
    after: str, before: str, empty: bool
) -> None:
    """`created_after: 3mo, created_before: 1y` can match nothing, whatever the start; `1mo`
    against `30d` is empty only in some months, so only the start can tell."""
    text = (
        "version: 1\nname: j\ntargets:\n  - kind: conversations\n"
        f"    where: {{created_after: {after}, created_before: {before}}}\n"
    )
    if empty:
        assert any("is not earlier than created_before" in p for p in problems(text))
    else:
        parse(text)


def test_calendar_months_end_on_the_last_day_of_a_shorter_month() -> None:
    """A month back from 31 May is 30 April (the calendar's month, not 30 days), and 3mo back
    from 31 May is 28 February."""
    may_31 = datetime(2026, 5, 31, 9, tzinfo=UTC)
    assert parse_bound("1mo").resolve(may_31) == datetime(2026, 4, 30, 9, tzinfo=UTC)
    assert parse_bound("3mo").resolve(may_31) == datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert parse_bound("P3M").resolve(may_31) == parse_bound("3mo").resolve(may_31)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45m", 2700), ("45min", 2700), ("90s", 90), ("6h", 21600), ("1d", 86400), ("2w", 1209600)],
)
def test_command_line_durations_read_m_as_minutes(text: str, seconds: float) -> None:
    """A duration on the command line (--max-duration, --min-interval) is a length of time:
    `m` is minutes there."""
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("3mo", "months and years have no fixed length", id="months"),
        pytest.param("1y", "months and years have no fixed length", id="years"),
        pytest.param("0s", "zero duration", id="zero"),
        pytest.param("2026-01-31", "not a duration like 45m, 6h or 1d", id="date"),
    ],
)
def test_command_line_durations_refuse_calendar_units(text: str, fragment: str) -> None:
    """A calendar month is no fixed number of seconds, so a time budget cannot be one."""
    with pytest.raises(ValueError, match=fragment):
        duration_seconds(text)


def test_relative_bounds_need_an_aware_now() -> None:
    """Resolving against a naive datetime is refused rather than guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_bound("1d").resolve(datetime(2026, 1, 1))


def test_resolved_times_are_frozen_and_restored() -> None:
    """Times resolved at job start survive a JSON round trip and are looked up per target."""
    spec = parse(FULL)
    times = resolve_times(spec, NOW)
    assert times == {
        "targets[0].where.conversations.updated_before": NOW - timedelta(days=30),
        "targets[0].where.created_before": NOW - timedelta(days=90),
        "targets[3].where.created_before": datetime(2026, 1, 31, tzinfo=UTC),
    }
    frozen = ResolvedTimes.at(spec, NOW).to_json()
    restored = ResolvedTimes.from_json(frozen)
    assert restored.get(0, "created_before") == NOW - timedelta(days=90)
    assert restored.get(0, "where.conversations.updated_before") == NOW - timedelta(days=30)
    assert restored.get(1, "created_before") is None
    later = ResolvedTimes.at(spec, NOW + timedelta(days=1))
    assert later.get(0, "created_before") != restored.get(0, "created_before")


def test_resolved_times_reject_naive_json() -> None:
    """A checkpoint time without a zone is refused rather than guessed."""
    with pytest.raises(ValueError, match="no time zone"):
        ResolvedTimes.from_json({"targets[0].where.created_before": "2026-01-01T00:00:00"})


def test_bound_in_other_zone_resolves_the_same_instant() -> None:
    """An aware now in another zone resolves to the same UTC instant."""
    other = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert parse_bound("1d").resolve(other) == NOW - timedelta(days=1)
    assert isinstance(parse_bound("1d"), Bound)


def test_describe_changes_lists_added_and_removed_targets() -> None:
    """A target added or removed shows as such, by index."""
    one = parse(MINIMAL).canonical()
    two = parse(MINIMAL + "  - {kind: configurations, where: {all: true}}\n").canonical()
    assert describe_changes(one, two) == ["targets[1]: added"]
    assert describe_changes(two, one) == ["targets[1]: removed"]
