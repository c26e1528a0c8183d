"""The job spec: a YAML file saying what to delete, parsed into frozen, fully validated models.

``load_spec`` / ``parse_spec`` either return a :class:`JobSpec` in which every ID, time bound and
manifest row has been checked, or raise :class:`~runner.errors.SpecError` listing every problem,
each as ``<YAML path>: <what is wrong and what would be valid>``. Nothing else escapes: YAML and
pydantic errors are translated here, at the boundary.

The YAML dialect is deliberately narrow: only ``true``/``false`` are booleans (``yes``, ``no``,
``on`` and ``off`` stay text), dates stay text (``parse_bound`` reads them, with its own messages),
and a key written twice in one mapping is an error rather than a silent overwrite.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    ValidationError,
    model_validator,
)

from runner.errors import SpecError
from runner.files import read_input
from runner.kinds.ids import show_value
from runner.kinds.registry import KINDS, by_spec, spec_words
from runner.kinds.spec_model import (
    Flag,
    Float,
    Int,
    ManifestInfo,
    ServiceSid,
    SpecModel,
    SpecTarget,
    Text,
    custom_error,
    join_path,
    problems_error,
)
from runner.kinds.timespec import Bound
from runner.kinds.v1 import SELECTOR_TAGS
from runner.spec.manifest import iter_manifest, validate_manifest

__all__ = [
    "AnyTarget",
    "JobSpec",
    "Limits",
    "OperationPolicy",
    "ProductLimits",
    "RetryPolicy",
    "Safety",
    "describe_changes",
    "describe_validation_error",
    "load_spec",
    "load_yaml",
    "parse_spec",
    "spec_fingerprint",
]

SPEC_VERSION = 1
# A spec lists what to delete, not the IDs themselves at scale: long lists belong in a manifest.
MAX_SPEC_BYTES = 1_000_000
# Aliases can make a small file expand enormously; no real spec has this many values.
MAX_YAML_VALUES = 200_000
_KIND_LIST = ", ".join(spec_words())


# --- YAML ------------------------------------------------------------------------------------


_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, dates left as text, and duplicate keys refused."""

    # PyYAML's own class attribute, replaced per subclass the way PyYAML's add_implicit_resolver
    # does; annotating it ClassVar would clash with PyYAML's stubs.
    yaml_implicit_resolvers = {  # noqa: RUF012
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    # YAML path of each mapping node, set by load_yaml before construction, so a duplicate key
    # is named where it is (``targets[0].where``) as well as by its line.
    paths: dict[int, str] = {}  # noqa: RUF012 (replaced per instance by load_yaml)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Keyed by the key's value, whatever line it is on: a flow mapping
        # (`{created_before: 365d, created_before: 1d}`) holds both on one line.
        seen: dict[Any, tuple[int, yaml.Mark]] = {}
        for index, (key_node, _) in enumerate(node.value):
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first_index, first = seen.setdefault(key, (index, key_node.start_mark))
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be plain text", key_node.start_mark
                ) from None
            if first_index != index:
                where = self.paths.get(id(node))
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{join_path(where, str(key)) + ': ' if where is not None else ''}"
                    f"key {show_value(key)} appears twice in one mapping "
                    f"(first on line {first.line + 1}, column {first.column + 1}); "
                    "keep one of them",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class _TooLarge(Exception):
    """The YAML document is too big or recursive to be a spec (alias tricks)."""


def _count_values(root: yaml.Node) -> int:
    """The number of values the document expands to, aliases counted at every use."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise _TooLarge("has an alias that refers to a value containing it (recursive alias)")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
        elif isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
        if total > MAX_YAML_VALUES:
            raise _TooLarge(f"expands to more than {MAX_YAML_VALUES} values (through aliases)")
        in_progress.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _line_map(root: yaml.Node) -> dict[str, int]:
    """YAML path → 1-based line where it is written, to point messages at the right line."""
    lines: dict[str, int] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in seen:
            return  # an alias: its lines are those of the anchor, already recorded
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = join_path(path, str(key_node.value))
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = f"{path}[{index}]"
                lines.setdefault(child, item.start_mark.line + 1)
                walk(item, child)

    walk(root, "")
    return lines


def _mapping_paths(root: yaml.Node) -> dict[int, str]:
    """id of each mapping node → its YAML path (the root is ``""``), for error messages."""
    paths: dict[int, str] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in paths:
            return  # an alias of a node already named
        if isinstance(node, yaml.MappingNode):
            paths[id(node)] = path
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    walk(value_node, join_path(path, str(key_node.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]")

    walk(root, "")
    return paths


def load_yaml(text: str, what: str) -> tuple[object, dict[str, int]]:
    """Parse one YAML document with bulkops' dialect; returns (data, line map).

    Raises ValueError naming the line and column of the first problem; ``what`` names the document
    in that message ("the job spec", "the config file").
    """
    loader: _Loader | None = None
    try:
        # The reader checks characters as soon as it is built, so it belongs inside the try.
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _count_values(node)
        loader.paths = _mapping_paths(node)
        data = loader.construct_document(node)
        return data, _line_map(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unreadable"
        raise ValueError(f"{what} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(f"{what} is not valid YAML: {detail}") from None
    except _TooLarge as exc:
        raise ValueError(f"{what} cannot be used: it {exc}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


# --- error translation -------------------------------------------------------------------------


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


# --- models ------------------------------------------------------------------------------------


def _name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value) or value in (".", ".."):
        raise custom_error(
            f"{show_value(value)} is not a valid name: use 1 to 64 letters, digits, "
            "'.', '_' or '-' (the name is used in file names)"
        )
    return value


# The spec's targets: one model per kind word, from the registry (the conversation kinds share
# one), told apart by `kind`. mypy sees their common base.
_TARGET_MODELS: dict[str, type[SpecTarget]] = {k.word: k.target_model for k in KINDS}
if TYPE_CHECKING:
    AnyTarget = SpecTarget
else:
    AnyTarget = Annotated[Union[tuple(_TARGET_MODELS.values())], Discriminator("kind")]  # noqa: UP007

# Union tags pydantic puts in error locations; _walk drops them from YAML paths.
_UNION_TAGS: dict[str, object] = {**_TARGET_MODELS, **SELECTOR_TAGS}

PositiveRate = Annotated[Float, Field(gt=0, le=100_000)]
Concurrency = Annotated[Int, Field(ge=1, le=1000)]


class ProductLimits(SpecModel):
    """Optional extra limits for one product host: requests per second, burst, in flight."""

    rate: PositiveRate | None = None
    burst: Annotated[Int, Field(ge=1, le=100_000)] | None = None
    concurrency: Concurrency | None = None


class Limits(SpecModel):
    """How fast the job may go; the defaults follow Twilio's documented limits."""

    # Twilio's 20429 is a limit on requests in flight per account, not on a rate.
    concurrency: Concurrency = 64
    per_conversation_rate: PositiveRate = 30.0
    per_service_rate: PositiveRate = 30.0
    conversations: ProductLimits = ProductLimits()
    memory: ProductLimits = ProductLimits()


Seconds = Annotated[Float, Field(gt=0, le=86_400)]


class RetryPolicy(SpecModel):
    """Retries of transient failures: bounded by attempts and by total time (seconds).

    ``max_pause`` bounds one Retry-After: a server asking for a longer pause stops the run
    (exit 9, resumable) instead of holding it asleep.
    """

    max_attempts: Annotated[Int, Field(ge=1, le=100)] = 8
    base_delay: Seconds = 0.5
    max_delay: Seconds = 30.0
    max_elapsed: Seconds = 900.0
    max_pause: Seconds = 900.0

    @model_validator(mode="after")
    def _check(self) -> RetryPolicy:
        if self.max_delay < self.base_delay:
            raise problems_error(
                [("max_delay", f"{self.max_delay} is less than base_delay {self.base_delay}")]
            )
        return self


class OperationPolicy(SpecModel):
    """How async Operations are followed: poll interval and deadline (seconds)."""

    poll_interval: Seconds = 2.0
    timeout: Annotated[Float, Field(gt=0, le=7 * 86_400)] = 900.0

    @model_validator(mode="after")
    def _check(self) -> OperationPolicy:
        if self.timeout < self.poll_interval:
            raise problems_error(
                [("timeout", f"{self.timeout} is shorter than poll_interval {self.poll_interval}")]
            )
        return self


class Safety(SpecModel):
    """Limits that stop a job: a deletion cap, and a failure rate after a minimum count."""

    max_deletions: Annotated[Int, Field(ge=1)] | None = None
    max_failure_rate: Annotated[Float, Field(gt=0, le=1)] = 0.5
    failure_rate_min_count: Annotated[Int, Field(ge=1)] = 1000


class JobSpec(SpecModel):
    """A whole job spec, as written in its YAML file (``version: 1``)."""

    misplaced: ClassVar[Mapping[str, str]] = {
        "target": "write targets: (a list)",
        "credentials": "credentials belong in the config file, read from the environment",
    }

    version: Literal[1]
    name: Annotated[Text, AfterValidator(_name)]
    service: ServiceSid | None = None
    webhooks: Flag | None = None
    targets: tuple[AnyTarget, ...]
    limits: Limits = Limits()
    retry: RetryPolicy = RetryPolicy()
    operations: OperationPolicy = OperationPolicy()
    safety: Safety = Safety()

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if not self.targets:
            raise problems_error([("targets", "is empty: a job needs at least one target")])
        return self

    def bounds(self) -> Iterator[tuple[str, Bound]]:
        """Every time bound, by YAML path (``targets[0].where.created_before``)."""
        for index, target in enumerate(self.targets):
            if target.where is not None:
                yield from target.where.bounds(f"targets[{index}].where")

    def canonical(self) -> dict[str, Any]:
        """The spec as plain JSON data, defaults filled in, manifests' counts and hashes added."""
        data: dict[str, Any] = self.model_dump(mode="json")
        if self.retry.max_pause == RetryPolicy().max_pause:
            # Added after checkpoints were being written: left out at its default, so the
            # fingerprint of a spec that does not set it is what it was, and those logs resume.
            del data["retry"]["max_pause"]
        for index, target in enumerate(self.targets):
            if target.manifest is not None:
                data["targets"][index]["manifest"] = {
                    "count": target.manifest.count,
                    "sha256": target.manifest.sha256,
                }
        return data


def spec_fingerprint(spec: JobSpec) -> str:
    """SHA-256 (hex) of the canonical spec: a resume compares it to detect a changed job."""
    text = json.dumps(spec.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def describe_changes(
    old_canonical: Mapping[str, Any], new_canonical: Mapping[str, Any]
) -> list[str]:
    """Human-readable differences between two :meth:`JobSpec.canonical` forms, by YAML path."""
    changes: list[str] = []

    def compare(path: str, old: object, new: object) -> None:
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for key in list(old) + [k for k in new if k not in old]:
                sub = join_path(path, str(key))
                if key not in new:
                    changes.append(f"{sub}: removed (was {_show(old[key])})")
                elif key not in old:
                    changes.append(f"{sub}: added ({_show(new[key])})")
                else:
                    compare(sub, old[key], new[key])
        elif isinstance(old, list) and isinstance(new, list):
            for index in range(max(len(old), len(new))):
                sub = f"{path}[{index}]"
                if index >= len(new):
                    changes.append(f"{sub}: removed")
                elif index >= len(old):
                    changes.append(f"{sub}: added")
                else:
                    compare(sub, old[index], new[index])
        elif old != new:
            changes.append(f"{path}: {_show(old)} -> {_show(new)}")

    compare("", old_canonical, new_canonical)
    return changes


def _show(value: object) -> str:
    return show_value(value) if not isinstance(value, Mapping | list) else "{...}"


# --- loading -----------------------------------------------------------------------------------


def _version_problem(data: Mapping[Any, Any]) -> tuple[str | None, bool]:
    """(problem, fatal): a wrong version stops validation, a missing one does not."""
    if "version" not in data:
        return "version: is required: add `version: 1` at the top of the spec", False
    value = data["version"]
    # `type(...) is int` because True == 1 in Python, and `version: true` is not a version.
    if type(value) is int and value == SPEC_VERSION:
        return None, False
    return (
        f"version: {show_value(value)} is not supported: this bulkops reads version: "
        f"{SPEC_VERSION}",
        True,
    )


def _check_manifests(
    data: Mapping[Any, Any], base_dir: Path
) -> tuple[list[str], dict[int, tuple[Path, ManifestInfo]]]:
    """Validate every from_file manifest of the raw data, even when other parts are invalid."""
    problems: list[str] = []
    found: dict[int, tuple[Path, ManifestInfo]] = {}
    targets = data.get("targets")
    if not isinstance(targets, list):
        return problems, found
    for index, raw in enumerate(targets):
        if not isinstance(raw, Mapping):
            continue
        written, kind_text, api = raw.get("from_file"), raw.get("kind"), raw.get("api", "v1")
        if not isinstance(written, str) or not written.strip() or api not in ("v1", "v2"):
            continue
        if not isinstance(kind_text, str) or kind_text not in spec_words():
            continue
        kind = by_spec(kind_text, api)
        path = Path(written)
        if not path.is_absolute():
            path = base_dir / path
        try:
            info = validate_manifest(
                path,
                kind,
                where=f"targets[{index}].from_file",
                display=written,
            )
        except SpecError as exc:
            problems.extend(exc.problems)
        else:
            found[index] = (path, info)
    return problems, found


def parse_spec(text: str, *, base_dir: Path) -> JobSpec:
    """Parse and validate a job spec; manifests are found relative to ``base_dir`` and read.

    Raises SpecError listing every problem.
    """
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(
            f"the job spec is larger than {MAX_SPEC_BYTES} bytes: put long ID lists in a "
            "from_file manifest"
        )
    try:
        data, lines = load_yaml(text, "the job spec")
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if data is None:
        raise SpecError("the job spec is empty: it needs at least `version: 1`, a name and targets")
    if not isinstance(data, dict):
        raise SpecError(
            f"the job spec must be a mapping of keys (version, name, targets, ...), "
            f"not {type(data).__name__} {show_value(data)}"
        )
    version_problem, fatal = _version_problem(data)
    if fatal:
        assert version_problem is not None
        raise SpecError(version_problem)
    problems = [version_problem] if version_problem else []
    manifest_problems, manifests = _check_manifests(data, base_dir)
    spec: JobSpec | None = None
    try:
        spec = JobSpec.model_validate({**data, "version": SPEC_VERSION})
    except ValidationError as exc:
        problems.extend(describe_validation_error(exc, JobSpec, lines))
    problems.extend(manifest_problems)
    if problems or spec is None:
        raise SpecError(problems)
    for index, (path, info) in manifests.items():
        target = spec.targets[index]
        kind = target.resource_kind
        target.attach_manifest(
            info, path, partial(iter_manifest, path, kind, expected_sha256=info.sha256)
        )
    return spec


def load_spec(path: Path) -> JobSpec:
    """Read and parse the job spec at ``path``; raises SpecError on any problem.

    Only a regular file (a link to one is fine: a ConfigMap mounts each file as a link) is
    read, and no more than :data:`MAX_SPEC_BYTES` of it: a FIFO or ``/dev/zero`` is refused."""
    raw = read_input(
        path,
        MAX_SPEC_BYTES,
        SpecError,
        noun="job spec",
        hint=" (put long ID lists in a from_file manifest)",
    )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: is not UTF-8 text (byte {exc.start})") from None
    return parse_spec(text, base_dir=path.parent)
