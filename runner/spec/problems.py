"""pydantic's validation errors as a user reads them: ``<YAML path>: <what is wrong and what
would be valid>`` (line N), with "did you mean" and the valid keys or kinds.

The paths are the YAML's, not pydantic's: union tags (a target's kind, a selector's form) are
dropped from them. The kinds and their words come from the registry.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from runner.kinds.ids import show_value
from runner.kinds.registry import spec_words, target_models
from runner.kinds.spec_model import join_path
from runner.kinds.v1 import SELECTOR_TAGS

__all__ = ["describe_validation_error"]

_KIND_LIST = ", ".join(spec_words())
# Union tags pydantic puts in error locations; _walk drops them from YAML paths.
_UNION_TAGS: dict[str, object] = {**target_models(), **SELECTOR_TAGS}


def _did_you_mean(word: object, options: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    choices = list(options)
    folded = [c for c in choices if c.lower() == word.lower()]
    close = folded or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unwrap(annotation: object) -> list[object]:
    """The alternatives an annotation allows, with Annotated and Optional peeled off."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        result: list[object] = []
        for arg in get_args(annotation):
            result.extend(_unwrap(arg))
        return result
    return [annotation]


def _models(options: list[object]) -> list[type[BaseModel]]:
    return [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]


def _walk(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, list[object]]:
    """Turn a pydantic loc into a YAML path, dropping union tags; also return what is there."""
    path = ""
    options: list[object] = [root]
    for elem in loc:
        if isinstance(elem, int):
            path += f"[{elem}]"
            items: list[object] = []
            for option in options:
                if get_origin(option) is tuple:
                    items.extend(_unwrap(get_args(option)[0]))
            options = items
            continue
        owner = next((m for m in _models(options) if elem in m.model_fields), None)
        if owner is not None:
            path = join_path(path, elem)
            options = _unwrap(owner.model_fields[elem].annotation)
        elif elem in _UNION_TAGS:
            options = _unwrap(_UNION_TAGS[elem])
        else:
            path = join_path(path, str(elem))
            options = []
    return path, options


def _options_from(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


_MISSING_HINTS = {
    "name": "a name for the job: 1 to 64 letters, digits, '.', '_' or '-' (it names files)",
    "targets": "a list of targets, each with a kind and one of ids, from_file or where",
    "conversations": (
        "the conversations to look in: 'all', a list of Conversation SIDs (CH...), "
        "or a filter {state, created_before, created_after, updated_before, updated_after}"
    ),
}

_TYPE_WORDS = {
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "int_parsing": "is not a whole number",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
    "string_type": "is not text",
    "tuple_type": "is not a list",
    "list_type": "is not a list",
    "model_type": "is not a mapping (key: value lines)",
    "model_attributes_type": "is not a mapping (key: value lines)",
    "dict_type": "is not a mapping (key: value lines)",
    "finite_number": "is not a finite number",
}


def describe_validation_error(
    exc: ValidationError, root: type[BaseModel], lines: Mapping[str, int] | None = None
) -> list[str]:
    """Every error of ``exc`` as ``<YAML path>: <what is wrong, what would be valid>``."""
    problems: list[str] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path, _ = _walk(root, loc)
        kind = error["type"]
        ctx: dict[str, Any] = dict(error.get("ctx") or {})
        value = error.get("input")
        messages: list[tuple[str, str]]
        if kind == "bulkops" and "problems" in ctx:
            messages = [(join_path(path, sub), message) for sub, message in ctx["problems"]]
        elif kind == "bulkops":
            messages = [(path, str(ctx["detail"]))]
        elif kind == "missing":
            hint = _MISSING_HINTS.get(str(loc[-1]), "")
            messages = [(path, f"is required{': ' + hint if hint else ''}")]
        elif kind == "extra_forbidden":
            _, parent = _walk(root, loc[:-1])
            messages = [(path, _unknown_key(str(loc[-1]), _models(parent)))]
        elif kind == "invalid_key":
            messages = [(path, "a key must be plain text")]
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            messages = [_bad_kind(path, value)]
        elif kind in ("literal_error", "enum"):
            choices = _options_from(str(ctx.get("expected", "")))
            messages = [
                (
                    path,
                    f"{show_value(value)} is not one of {', '.join(choices)}"
                    + _did_you_mean(value, choices),
                )
            ]
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            words = {
                "greater_than": "greater than",
                "greater_than_equal": "at least",
                "less_than": "less than",
                "less_than_equal": "at most",
            }[kind]
            limit = next(iter(ctx.values()), "?")
            messages = [(path, f"{show_value(value)} is out of range: it must be {words} {limit}")]
        elif kind in _TYPE_WORDS:
            messages = [(path, f"{show_value(value)} {_TYPE_WORDS[kind]}")]
        else:
            messages = [(path, str(error["msg"]))]
        for where, message in messages:
            problems.append(_with_line(where, message, lines))
    return problems


def _with_line(path: str, message: str, lines: Mapping[str, int] | None) -> str:
    text = f"{path}: {message}" if path else message
    if not lines:
        return text
    probe = path
    while probe:
        if probe in lines:
            return f"{text} (line {lines[probe]})"
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return text


def _unknown_key(key: str, parents: list[type[BaseModel]]) -> str:
    if not parents:
        return "unknown key"
    model = parents[0]
    hints: Mapping[str, str] = getattr(model, "misplaced", {})
    if key in hints:
        return f"not allowed here: {hints[key]}"
    valid = list(model.model_fields)
    return f"unknown key{_did_you_mean(key, valid)}; valid keys here: {', '.join(valid)}"


def _bad_kind(path: str, value: object) -> tuple[str, str]:
    if not isinstance(value, Mapping):
        return path, f"{show_value(value)} is not a mapping: a target needs a kind and a selector"
    if "kind" not in value:
        return join_path(path, "kind"), f"is required: one of {_KIND_LIST}"
    tag = value["kind"]
    return (
        join_path(path, "kind"),
        f"{show_value(tag)} is not one of {_KIND_LIST}" + _did_you_mean(tag, spec_words()),
    )
