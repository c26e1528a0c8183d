"""Manifest files: streaming validation of every row, then streaming iteration."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.kinds.base import ResourceKind, Target
from runner.kinds.registry import by_spec
from runner.spec.manifest import MAX_PROBLEMS, iter_manifest, validate_manifest

HEX = "0123456789abcdef" * 2
CH = "CH" + HEX
IM = "IM" + HEX
STORE = "mem_store_01h9d8r0vte3hz8tykdj329t7r"
MESSAGES = by_spec("messages")
PARTICIPANTS = by_spec("participants")
CONVERSATIONS = by_spec("conversations", "v1")
CONVERSATIONS_V2 = by_spec("conversations", "v2")
MEMORY_STORES = by_spec("memory_stores")



def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def problems_of(path: Path, kind: ResourceKind) -> tuple[str, ...]:
    with pytest.raises(SpecError) as info:
        validate_manifest(path, kind, where="targets[3].from_file", display=path.name)
    return info.value.problems


@pytest.mark.parametrize(
    ("name", "text", "kind", "expected"),
    [
        pytest.param(
            "m.csv",
            f"id,conversation_sid\n{IM},{CH}\n",
            MESSAGES,
            [Target(MESSAGES, IM, CH)],
            id="csv-messages",
        ),
        pytest.param(
            "m.csv",
            f"\ufeffnote,conversation_sid,ID\nhello,{CH} , {IM}\n\n",
            MESSAGES,
            [Target(MESSAGES, IM, CH)],
            id="csv-bom-extra-columns-spaces-blank-lines",
        ),
        pytest.param(
            "s.csv",
            f"id\r\n{STORE}\r\n",
            MEMORY_STORES,
            [Target(MEMORY_STORES, STORE)],
            id="csv-crlf",
        ),
        pytest.param(
            "m.jsonl",
            f'{{"id": "{IM}", "conversation_sid": "{CH}", "extra": 1}}\n\n',
            MESSAGES,
            [Target(MESSAGES, IM, CH)],
            id="jsonl-object",
        ),
        pytest.param(
            "s.ndjson",
            f'"{STORE}"\n{{"id": "{STORE}"}}\n',
            MEMORY_STORES,
            [Target(MEMORY_STORES, STORE)] * 2,
            id="ndjson-bare-strings",
        ),
    ],
)
def test_valid_manifests_validate_and_iterate(
    tmp_path: Path, name: str, text: str, kind: ResourceKind, expected: list[Target]
) -> None:
    """A valid manifest yields its count and hash, then streams exactly its rows."""
    path = write(tmp_path, name, text)
    info = validate_manifest(path, kind)
    assert info.count == len(expected)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(iter_manifest(path, kind, expected_sha256=info.sha256)) == expected


@pytest.mark.parametrize(
    ("name", "text", "kind", "fragment"),
    [
        pytest.param("m.csv", "", MESSAGES, "is empty: it needs a header row", id="empty"),
        pytest.param(
            "m.csv", "id,conversation_sid\n\n", MESSAGES, "has no rows", id="header-only"
        ),
        pytest.param(
            "m.csv",
            f"id\n{IM}\n",
            MESSAGES,
            "the header row has no conversation_sid column",
            id="missing-column",
        ),
        pytest.param(
            "c.csv",
            f"{CH}\n",
            CONVERSATIONS,
            "the first line must name the columns: id",
            id="no-header",
        ),
        pytest.param(
            "m.csv",
            f"id,conversation_sid\n{IM}\n",
            MESSAGES,
            "line 2: has 1 fields",
            id="short-row",
        ),
        pytest.param(
            "m.jsonl",
            f'"{IM}"\n',
            MESSAGES,
            "line 1: 'IM",
            id="jsonl-bare-message",
        ),
        pytest.param(
            "s.jsonl", "{oops\n", MEMORY_STORES, "line 1: is not JSON", id="not-json"
        ),
        pytest.param("s.jsonl", "[1]\n", MEMORY_STORES, "is not an object", id="json-list"),
        pytest.param(
            "s.jsonl", '{"id": 5}\n', MEMORY_STORES, "id is missing or not text", id="int-id"
        ),
        pytest.param(
            "s.txt", STORE, MEMORY_STORES, "is not a .csv, .jsonl or .ndjson", id="suffix"
        ),
        pytest.param("s.jsonl", b"\xff\xfe\n", MEMORY_STORES, "is not UTF-8", id="binary"),
        pytest.param(
            "s.jsonl",
            b"x" * 70_000,
            MEMORY_STORES,
            "longer than 64 KiB",
            id="huge-line",
        ),
        pytest.param(
            "c.csv",
            "id\nconv_conversation_01h9d8r0vte3hz8tykdj329t7r\n",
            CONVERSATIONS,
            "is not a Conversation SID",
            id="v2-id-for-v1",
        ),
    ],
)
def test_bad_manifests_name_the_problem(
    tmp_path: Path, name: str, text: str | bytes, kind: ResourceKind, fragment: str
) -> None:
    """Each kind of bad manifest raises SpecError with a message naming the target and problem."""
    problems = problems_of(write(tmp_path, name, text), kind)
    assert any(fragment in p for p in problems), problems
    assert all(p.startswith("targets[3].from_file: ") for p in problems)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    """A manifest that does not exist is named, with where relative paths start."""
    problems = problems_of(tmp_path / "nope.csv", MESSAGES)
    assert (
        "nope.csv does not exist (a relative path starts at the spec file's directory)"
        in (problems[0])
    )


def test_bad_row_on_line_5001_is_reported_with_its_line(tmp_path: Path) -> None:
    """Among 5,000 good rows, the one bad row is reported with its physical line number."""
    rows = [f"{IM[:-4]}{i:04x},{CH}" for i in range(4999)] + [f"IM12,{CH}"]
    path = write(tmp_path, "ids.csv", "id,conversation_sid\n" + "\n".join(rows) + "\n")
    problems = problems_of(path, MESSAGES)
    assert problems == (
        "targets[3].from_file: ids.csv line 5001: 'IM12' is not a Message SID "
        "(IM followed by 32 hex digits)",
    )


def test_every_bad_row_is_counted_but_only_the_first_are_listed(tmp_path: Path) -> None:
    """Many bad rows give MAX_PROBLEMS lines and a count of the rest."""
    path = write(tmp_path, "s.jsonl", "".join(f'"bad{i}"\n' for i in range(MAX_PROBLEMS + 7)))
    problems = problems_of(path, MEMORY_STORES)
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[0].startswith("targets[3].from_file: s.jsonl line 1: 'bad0'")
    assert problems[-1].endswith("and 7 more bad rows")


def test_iteration_detects_a_file_changed_after_validation(tmp_path: Path) -> None:
    """A manifest edited between validation and iteration fails instead of yielding new IDs."""
    path = write(tmp_path, "s.jsonl", f'"{STORE}"\n')
    info = validate_manifest(path, MEMORY_STORES)
    path.write_text(f'"{STORE}"\n"{STORE[:-1]}0"\n', encoding="utf-8")
    with pytest.raises(SpecError, match="changed after the job spec was validated"):
        list(iter_manifest(path, MEMORY_STORES, expected_sha256=info.sha256))


def test_iteration_refuses_a_row_made_bad_after_validation(tmp_path: Path) -> None:
    """A bad row met while streaming raises before anything after it is yielded."""
    path = write(tmp_path, "s.jsonl", f'"{STORE}"\n"../x"\n"{STORE}"\n')
    rows = iter_manifest(path, MEMORY_STORES)
    assert next(rows) == Target(MEMORY_STORES, STORE)
    with pytest.raises(SpecError, match="line 2"):
        next(rows)


def test_v2_conversation_manifest_uses_the_v2_pattern(tmp_path: Path) -> None:
    """With api v2, conversation manifests hold conv_conversation_ IDs."""
    conv = "conv_conversation_01h9d8r0vte3hz8tykdj329t7r"
    path = write(tmp_path, "c.csv", f"id\n{conv}\n")
    assert validate_manifest(path, CONVERSATIONS_V2).count == 1
