"""The job spec: a YAML file saying what to delete, parsed into frozen, fully validated models.

``load_spec`` / ``parse_spec`` either return a :class:`JobSpec` in which every ID, time bound and
manifest row has been checked, or raise :class:`~runner.errors.SpecError` listing every problem,
each as ``<YAML path>: <what is wrong and what would be valid>``. Nothing else escapes: YAML and
pydantic errors are translated here, at the boundary.

The YAML is read by :mod:`runner.spec.yaml_input` (a narrow dialect, with line numbers) and
pydantic's errors are worded by :mod:`runner.spec.problems`; this module holds the models, the
fingerprint and the loading.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    model_validator,
)

from runner.errors import SpecError
from runner.files import read_input
from runner.kinds.ids import show_value, validate_id
from runner.kinds.registry import by_spec, selector_of, spec_words, target_models
from runner.kinds.spec_model import (
    Flag,
    Float,
    Int,
    ManifestInfo,
    SpecModel,
    SpecTarget,
    Text,
    custom_error,
    join_path,
    problems_error,
)
from runner.kinds.timespec import Bound
from runner.spec.holds import ExcludeSpec, check_hold_files
from runner.spec.manifest import iter_manifest, validate_manifest
from runner.spec.problems import describe_validation_error
from runner.spec.yaml_input import load_yaml

__all__ = [
    "AnyTarget",
    "JobSpec",
    "LimitsSpec",
    "OperationPolicy",
    "ProductLimits",
    "RetrySpec",
    "Safety",
    "describe_changes",
    "load_spec",
    "parse_spec",
    "spec_fingerprint",
]

SPEC_VERSION = 1
# A spec lists what to delete, not the IDs themselves at scale: long lists belong in a manifest.
MAX_SPEC_BYTES = 1_000_000


# --- models ------------------------------------------------------------------------------------


def _name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value) or value in (".", ".."):
        raise custom_error(
            f"{show_value(value)} is not a valid name: use 1 to 64 letters, digits, "
            "'.', '_' or '-' (the name is used in file names)"
        )
    return value


def _service_sid(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{show_value(value)} is not a Service SID (IS followed by 32 hex digits)")
    return validate_id("service", value)


def _service(value: object) -> str | tuple[str, ...]:
    """``service:``: one Service SID, ``all``, or a list of Service SIDs."""
    if value == "all":
        return "all"
    if not isinstance(value, list | tuple):
        try:
            return _service_sid(value)
        except ValueError as exc:
            raise custom_error(f"{exc}, 'all' or a list of Service SIDs") from None
    if not value:
        raise custom_error("is empty: list at least one Service SID (IS...), or write `all`")
    problems: list[tuple[str, str]] = []
    seen: set[object] = set()
    for index, one in enumerate(value):
        if one == "all":
            problems.append(
                (
                    f"[{index}]",
                    "'all' cannot be listed with Service SIDs: write `service: all` alone, "
                    "or list only SIDs",
                )
            )
            continue
        try:
            _service_sid(one)
        except ValueError as exc:
            problems.append((f"[{index}]", str(exc)))
            continue
        if one in seen:
            problems.append((f"[{index}]", f"{show_value(one)} is listed twice: list each once"))
        seen.add(one)
    if problems:
        raise problems_error(problems)
    return tuple(value)


# A Service SID, `all` (every Service of the account, found when the run starts) or a list.
ServiceChoice = Annotated[
    str | tuple[str, ...],
    PlainValidator(_service),
    PlainSerializer(lambda value: list(value) if isinstance(value, tuple) else value),
]


# The spec's targets: one model per kind word, from the registry (the conversation kinds share
# one), told apart by `kind`. mypy sees their common base.
_TARGET_MODELS: dict[str, type[SpecTarget]] = target_models()
if TYPE_CHECKING:
    AnyTarget = SpecTarget
else:
    AnyTarget = Annotated[Union[tuple(_TARGET_MODELS.values())], Discriminator("kind")]  # noqa: UP007


PositiveRate = Annotated[Float, Field(gt=0, le=100_000)]
Concurrency = Annotated[Int, Field(ge=1, le=1000)]


class ProductLimits(SpecModel):
    """Optional extra limits for one product host: requests per second, burst, in flight."""

    rate: PositiveRate | None = None
    burst: Annotated[Int, Field(ge=1, le=100_000)] | None = None
    concurrency: Concurrency | None = None


class LimitsSpec(SpecModel):
    """How fast the job may go; the defaults follow Twilio's documented limits."""

    # Twilio's 20429 is a limit on requests in flight per account, not on a rate.
    concurrency: Concurrency = 64
    per_conversation_rate: PositiveRate = 30.0
    per_service_rate: PositiveRate = 30.0
    conversations: ProductLimits = ProductLimits()
    memory: ProductLimits = ProductLimits()


Seconds = Annotated[Float, Field(gt=0, le=86_400)]


class RetrySpec(SpecModel):
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
    def _check(self) -> RetrySpec:
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
    service: ServiceChoice | None = None
    webhooks: Flag | None = None
    targets: tuple[AnyTarget, ...]
    limits: LimitsSpec = LimitsSpec()
    retry: RetrySpec = RetrySpec()
    operations: OperationPolicy = OperationPolicy()
    safety: Safety = Safety()
    exclude: ExcludeSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if not self.targets:
            raise problems_error([("targets", "is empty: a job needs at least one target")])
        if isinstance(self.service, tuple) or self.service == "all":
            problems = [
                (f"targets[{index}]", problem)
                for index, target in enumerate(self.targets)
                if (problem := _named_in_one_service(target)) is not None
            ]
            if problems:
                raise problems_error(problems)
        return self

    @property
    def one_service(self) -> str | None:
        """The job's one Service SID; None for the account's default Service, or several."""
        return self.service if isinstance(self.service, str) and self.service != "all" else None

    def bounds(self) -> Iterator[tuple[str, Bound]]:
        """Every time bound, by YAML path (``targets[0].where.created_before``)."""
        for index, target in enumerate(self.targets):
            if target.where is not None:
                yield from target.where.bounds(f"targets[{index}].where")

    def canonical(self) -> dict[str, Any]:
        """The spec as plain JSON data, defaults filled in, manifests' counts and hashes added."""
        data: dict[str, Any] = self.model_dump(mode="json")
        if self.retry.max_pause == RetrySpec().max_pause:
            # Added after checkpoints were being written: left out at its default, so the
            # fingerprint of a spec that does not set it is what it was, and those logs resume.
            del data["retry"]["max_pause"]
        if self.exclude is None:
            del data["exclude"]  # added later too: a spec without holds keeps its fingerprint
        for index, target in enumerate(self.targets):
            if target.manifest is not None:
                data["targets"][index]["manifest"] = {
                    "count": target.manifest.count,
                    "sha256": target.manifest.sha256,
                }
        return data


def _named_in_one_service(target: SpecTarget) -> str | None:
    """Why a v1 target cannot be part of a job of several Services: its IDs name no Service."""
    if selector_of(target.kind) is not None:
        return None  # it names people (its from_file too), looked up in every Service
    if not target.resource_kind.per_service:
        return None
    if target.ids is not None or target.from_file is not None:
        how = "ids" if target.ids is not None else "from_file"
    elif isinstance(getattr(target.where, "conversations", None), tuple):
        how = "where.conversations: [CH...]"
    else:
        return None
    return (
        f"{target.kind} by {how} name no Service, and this job has several (`service:`); "
        "select them with `where` here, or name their one Service in a job of their own"
    )


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
        path = Path(written)
        if not path.is_absolute():
            path = base_dir / path
        where = f"targets[{index}].from_file"
        selector = selector_of(kind_text)
        try:
            if selector is not None:
                info = selector.check_file(path, where, written)  # requests, not IDs
            else:
                kind = by_spec(kind_text, api)
                info = validate_manifest(path, kind, where=where, display=written)
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
    problems.extend(check_hold_files(data, base_dir))
    if problems or spec is None:
        raise SpecError(problems)
    if spec.exclude is not None:
        spec.exclude.attach_base(base_dir)
    for index, (path, info) in manifests.items():
        target = spec.targets[index]
        if selector_of(target.kind) is not None:
            target.attach_manifest(info, path, lambda: iter(()))  # its selector reads the file
            continue
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
