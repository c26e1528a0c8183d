"""The Kubernetes manifests in deploy/kubernetes, checked offline: no cluster, no network.

Each YAML document is walked against the Kubernetes object model of the ``kubernetes`` client
(its ``openapi_types`` and ``attribute_map``): an unknown or misspelt field, a wrong type or a
missing required field is a problem, as the API server would say. Then what matters for bulkops
is asserted: no overlapping runs, one shard per index, secrets and claims that exist, no
credential in a workload, and job specs that bulkops itself accepts.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from runner.cli import build_parser, duration
from runner.errors import ExitCode, InputError
from runner.plan.planner import build_plan
from runner.spec.config import load_config
from runner.spec.jobspec import parse_spec

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
CREDENTIAL_ENV = {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET"}
# A real Account SID, API key SID or auth token shape: 32 hex digits, prefixed or not.
CREDENTIAL_SHAPE = re.compile(r"\b(?:AC|SK)?[0-9a-fA-F]{32}\b")
WORKLOADS = ("CronJob", "Job")
# Exits another pod would repeat: podFailurePolicy fails the Job (or the index) on exactly these.
FINAL = {ExitCode.FAILURES, ExitCode.BAD_INPUT, ExitCode.ABORTED, ExitCode.AUTH}
# The least time between a scheduled run's --max-duration and its Job's activeDeadlineSeconds:
# the pod's start and bulkops' own stop (the manifests keep 30 min; the README says why).
MARGIN_S = 15 * 60

Doc = dict[str, Any]


def load_docs() -> list[Doc]:
    """Every YAML document under deploy/kubernetes, each tagged with its file name."""
    docs: list[Doc] = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append({"__file__": path.name, **doc})
    return docs


# --- the object model ---------------------------------------------------------------------------


class ManifestProblem(Exception):
    """A document does not fit the Kubernetes object model."""


_LIST = re.compile(r"(?:List|list)\[(.+)\]")
_DICT = re.compile(r"(?:Dict\[|dict\()str, (.+)[\])]")
_PRIMITIVES: dict[str, Callable[[object], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "object": lambda v: True,  # int-or-string and free-form fields
    "datetime": lambda v: isinstance(v, str | datetime),
    "bytes": lambda v: isinstance(v, str),
}


def conform(value: object, type_name: str, where: str) -> object:
    """``value`` as an instance of the client's model ``type_name``; ManifestProblem if it is
    not one. The client itself would drop unknown keys silently, so they are checked here."""
    if (check := _PRIMITIVES.get(type_name)) is not None:
        if not check(value):
            raise ManifestProblem(f"{where}: {value!r} is not of type {type_name}")
        return value
    if (many := _LIST.fullmatch(type_name)) is not None:
        if not isinstance(value, list):
            raise ManifestProblem(f"{where}: is not a list")
        return [conform(v, many[1], f"{where}[{i}]") for i, v in enumerate(value)]
    if (mapping := _DICT.fullmatch(type_name)) is not None:
        if not isinstance(value, dict):
            raise ManifestProblem(f"{where}: is not a mapping")
        return {k: conform(v, mapping[1], f"{where}.{k}") for k, v in value.items()}
    model = getattr(client, type_name)
    if not isinstance(value, dict):
        raise ManifestProblem(f"{where}: is not a mapping ({type_name})")
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    fields: dict[str, object] = {}
    for key, item in value.items():
        if key not in by_json:
            raise ManifestProblem(f"{where}.{key}: unknown field of {type_name}")
        attr = by_json[key]
        fields[attr] = conform(item, model.openapi_types[attr], f"{where}.{key}")
    try:
        return model(**fields)
    except (ValueError, TypeError) as exc:  # a required field is missing
        raise ManifestProblem(f"{where}: not a valid {type_name}: {exc}") from None


def model_name(doc: Doc) -> str:
    """The client's model of a document: ``batch/v1`` + ``CronJob`` is ``V1CronJob``."""
    version = str(doc.get("apiVersion", "")).rsplit("/", 1)[-1]
    return f"{version.capitalize()}{doc.get('kind')}"


# --- what bulkops needs ------------------------------------------------------------------------


def pod_spec(doc: Doc) -> Doc:
    """The pod template's spec of a CronJob or a Job."""
    spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    result: Doc = spec["template"]["spec"]
    return result


def containers(doc: Doc) -> Iterator[Doc]:
    """Every container of a workload."""
    yield from pod_spec(doc)["containers"]


def bulkops_argv(container: Doc) -> list[str]:
    """The bulkops command line of a container, after the ``tini … --`` that may run it."""
    argv = [*container.get("command", []), *container.get("args", [])]
    return argv[argv.index("--") + 1 :] if argv[:1] == ["tini"] and "--" in argv else argv


def tini_remaps(container: Doc) -> set[int]:
    """The exit codes the container's ``tini -e CODE`` turns into 0."""
    argv = container.get("command", [])
    if argv[:1] != ["tini"] or "--" not in argv:
        return set()
    prefix = argv[: argv.index("--")]
    return {int(prefix[i + 1]) for i, word in enumerate(prefix[:-1]) if word == "-e"}


def exit_rules(doc: Doc) -> dict[str, set[int]]:
    """The exit codes each podFailurePolicy action names."""
    rules: dict[str, set[int]] = {}
    for rule in doc["spec"].get("podFailurePolicy", {}).get("rules", []):
        if "onExitCodes" in rule:
            rules.setdefault(rule["action"], set()).update(rule["onExitCodes"]["values"])
    return rules


def option(argv: list[str], flag: str) -> str | None:
    """The value after ``flag`` in ``argv``, if it is there."""
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else None


def check_workload(doc: Doc, by_kind: dict[str, list[Doc]]) -> list[str]:
    """What is wrong with one CronJob or Job for bulkops."""
    problems: list[str] = []
    name = f"{doc['kind']} {doc['metadata']['name']}"
    pod = pod_spec(doc)
    secrets = {
        s["metadata"]["name"]: {*s.get("stringData", {}), *s.get("data", {})}
        for s in by_kind.get("Secret", [])
    }
    claims = {p["metadata"]["name"] for p in by_kind.get("PersistentVolumeClaim", [])}
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind.get("ConfigMap", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if pod.get("restartPolicy") != "Never":
        problems.append(f"{name}: restartPolicy must be Never (podFailurePolicy needs it)")
    for volume in volumes.values():
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim is not None and claim not in claims:
            problems.append(f"{name}: claimName {claim!r} is not a PVC in deploy/kubernetes")
    for container in containers(doc):
        argv = bulkops_argv(container)
        if argv[:2] != ["bulkops", "run"]:
            problems.append(f"{name}: the command is not `bulkops run …`: {shlex.join(argv)}")
            continue
        if "--resume-or-start" not in argv:
            problems.append(f"{name}: a scheduled run needs --resume-or-start")
        if option(argv, "--metrics-textfile") is None:
            problems.append(f"{name}: no --metrics-textfile")
        if "--shard" in argv:
            problems.append(f"{name}: --shard fixes one index; use --shards N in a workload")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        checkpoint_dir = option(argv, "--checkpoint-dir")
        mounted = volumes.get(mounts.get(checkpoint_dir or "", ""), {})
        if "persistentVolumeClaim" not in mounted:
            problems.append(f"{name}: --checkpoint-dir {checkpoint_dir} is not a mounted PVC")
        spec_file = Path(argv[2])
        spec_volume = volumes.get(mounts.get(str(spec_file.parent), ""), {})
        spec_map = config_maps.get(spec_volume.get("configMap", {}).get("name", ""))
        if spec_map is None or spec_file.name not in spec_map:
            problems.append(f"{name}: job spec {spec_file} is not a key of a mounted ConfigMap")
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if env["name"] in CREDENTIAL_ENV and ref is None:
                problems.append(f"{name}: {env['name']} must come from a Secret, not a literal")
            if ref is not None and ref.get("key") not in secrets.get(ref.get("name"), set()):
                problems.append(
                    f"{name}: env {env['name']} refers to {ref.get('name')}/{ref.get('key')}, "
                    "which no Secret in deploy/kubernetes defines"
                )
    rules = exit_rules(doc["spec"]["jobTemplate"] if doc["kind"] == "CronJob" else doc)
    for action, codes in rules.items():
        if action in ("FailJob", "FailIndex") and codes != FINAL:
            problems.append(
                f"{name}: podFailurePolicy {action} names exits {sorted(codes)}, not "
                f"{sorted(FINAL)} (the exits another pod would repeat)"
            )
        if action == "Ignore":
            problems.append(
                f"{name}: podFailurePolicy Ignores exits {sorted(codes)}: Ignore starts another "
                "pod, which resumes the run at once"
            )
    if doc["kind"] == "CronJob":
        spec = doc["spec"]
        if spec.get("concurrencyPolicy") != "Forbid":
            problems.append(f"{name}: concurrencyPolicy must be Forbid (one run per checkpoint)")
        if not spec.get("startingDeadlineSeconds"):
            problems.append(f"{name}: startingDeadlineSeconds is not set")
        deadline = spec["jobTemplate"]["spec"].get("activeDeadlineSeconds")
        for container in containers(doc):
            budget = option(bulkops_argv(container), "--max-duration")
            if budget is None:
                problems.append(f"{name}: a nightly run needs --max-duration (its time budget)")
            elif deadline is None or deadline < duration(budget) + MARGIN_S:
                problems.append(
                    f"{name}: activeDeadlineSeconds {deadline} leaves less than {MARGIN_S} s "
                    f"after --max-duration {budget}: the deadline would cut the run first"
                )
            if ExitCode.OUT_OF_TIME not in tini_remaps(container):
                problems.append(
                    f"{name}: the time budget's exit {int(ExitCode.OUT_OF_TIME)} is not turned "
                    "into a success (tini -e): every night cut by it would be a failed Job"
                )
    else:
        spec = doc["spec"]
        if spec.get("completionMode") != "Indexed":
            problems.append(f"{name}: completionMode must be Indexed (JOB_COMPLETION_INDEX)")
        for container in containers(doc):
            argv = bulkops_argv(container)
            shards = option(argv, "--shards")
            counts = {spec.get("completions"), spec.get("parallelism")}
            if shards is None or counts != {int(shards)}:
                problems.append(
                    f"{name}: completions {spec.get('completions')}, parallelism "
                    f"{spec.get('parallelism')} and --shards {shards} must be one number"
                )
    return problems


def check(docs: list[Doc]) -> list[str]:
    """Every problem of a set of manifests: the object model first, then bulkops' needs."""
    problems: list[str] = []
    by_kind: dict[str, list[Doc]] = {}
    for doc in docs:
        body = {k: v for k, v in doc.items() if k != "__file__"}
        where = f"{doc['__file__']}:{doc.get('kind')}"
        try:
            conform(body, model_name(doc), where)
        except ManifestProblem as exc:
            problems.append(str(exc))
        except AttributeError:
            problems.append(f"{where}: no Kubernetes model {model_name(doc)}")
        by_kind.setdefault(str(doc.get("kind")), []).append(doc)
    if problems:
        return problems  # the checks below index into the documents' structure
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            problems.extend(check_workload(doc, by_kind))
            text = (DEPLOY / doc["__file__"]).read_text()
            for rendered in (text, yaml.safe_dump(doc)):
                if CREDENTIAL_SHAPE.search(rendered):
                    problems.append(f"{doc['__file__']}: holds a credential-shaped literal")
    for secret in by_kind.get("Secret", []):
        for key, value in {**secret.get("stringData", {}), **secret.get("data", {})}.items():
            if "REPLACE_ME" not in str(value):
                problems.append(f"Secret {key}: must hold a REPLACE_ME placeholder, not a value")
    for config_map in by_kind.get("ConfigMap", []):
        for key, text in config_map.get("data", {}).items():
            if key.endswith(".yaml"):
                try:
                    parse_spec(text, base_dir=DEPLOY)
                except InputError as exc:
                    problems.append(f"ConfigMap {key}: bulkops refuses the job spec: {exc}")
    return problems


# --- the tests ---------------------------------------------------------------------------------


def test_the_manifests_have_no_problem() -> None:
    """Every document fits its Kubernetes model and meets bulkops' needs."""
    docs = load_docs()
    assert {d["kind"] for d in docs} == {
        "CronJob",
        "Job",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
    }
    assert check(docs) == []


def test_secret_keys_are_the_variables_bulkops_reads() -> None:
    """The env names the workloads set are the ones runner.spec.config takes credentials from."""
    names = {
        env["name"]
        for doc in load_docs()
        if doc["kind"] in WORKLOADS
        for container in containers(doc)
        for env in container.get("env", [])
    }
    assert names == {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"}
    env = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "t" * 32}
    config = load_config(None, env, cwd=Path("/var/lib/bulkops"))
    assert config.credentials.method == "auth_token"


def _doc(docs: list[Doc], kind: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def _container(docs: list[Doc], kind: str) -> Doc:
    (found,) = containers(_doc(docs, kind))
    return found


def _rename(mapping: Doc, old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _cron_spec(docs: list[Doc]) -> Doc:
    spec: Doc = _doc(docs, "CronJob")["spec"]["jobTemplate"]["spec"]
    return spec


def _set_command(docs: list[Doc], kind: str, flag: str, value: str) -> None:
    command = _container(docs, kind)["command"]
    command[command.index(flag) + 1] = value


Breakage = Callable[[list[Doc]], None]
BROKEN: list[Any] = [
    pytest.param(
        lambda d: _rename(_doc(d, "CronJob")["spec"], "concurrencyPolicy", "concurencyPolicy"),
        "unknown field",
        id="misspelt-field",
    ),
    pytest.param(
        lambda d: _rename(_doc(d, "CronJob")["spec"], "jobTemplate", "job_template"),
        "unknown field",
        id="snake-case-field",
    ),
    pytest.param(
        lambda d: _container(d, "Job").pop("name"), "not a valid V1Container", id="no-name"
    ),
    pytest.param(
        lambda d: _doc(d, "Job")["spec"].update(completions="4"),
        "is not of type int",
        id="string-count",
    ),
    pytest.param(
        lambda d: _doc(d, "CronJob")["spec"].update(concurrencyPolicy="Allow"),
        "Forbid",
        id="overlapping-runs",
    ),
    pytest.param(
        lambda d: _doc(d, "CronJob")["spec"].pop("startingDeadlineSeconds"),
        "startingDeadlineSeconds",
        id="no-starting-deadline",
    ),
    pytest.param(
        lambda d: _doc(d, "Job")["spec"].update(completionMode="NonIndexed"),
        "Indexed",
        id="not-indexed",
    ),
    pytest.param(
        lambda d: _doc(d, "Job")["spec"].update(parallelism=3),
        "must be one number",
        id="parallelism-differs",
    ),
    pytest.param(
        lambda d: _set_command(d, "Job", "--shards", "8"),
        "must be one number",
        id="shards-differ",
    ),
    pytest.param(
        lambda d: _container(d, "CronJob")["env"][1]["valueFrom"]["secretKeyRef"].update(
            key="TWILIO_TOKEN"
        ),
        "which no Secret",
        id="secret-key-missing",
    ),
    pytest.param(
        lambda d: pod_spec(_doc(d, "CronJob"))["volumes"][1]["persistentVolumeClaim"].update(
            claimName="checkpoints"
        ),
        "is not a PVC",
        id="claim-name-mismatch",
    ),
    pytest.param(
        lambda d: _set_command(d, "CronJob", "--checkpoint-dir", "/data"),
        "not a mounted PVC",
        id="checkpoints-not-on-the-pvc",
    ),
    pytest.param(
        lambda d: _container(d, "Job")["env"].__setitem__(
            1, {"name": "TWILIO_AUTH_TOKEN", "value": "0123456789abcdef0123456789abcdef"}
        ),
        "must come from a Secret",
        id="credential-literal",
    ),
    pytest.param(
        lambda d: _doc(d, "Secret")["stringData"].update(TWILIO_AUTH_TOKEN="s3cr3t-value"),
        "REPLACE_ME",
        id="real-looking-secret",
    ),
    pytest.param(
        lambda d: _doc(d, "ConfigMap")["data"].update(
            {"job.yaml": "version: 1\nname: x\ntargets:\n  - kind: messages\n    where: {}\n"}
        ),
        "bulkops refuses the job spec",
        id="bad-job-spec",
    ),
    pytest.param(
        lambda d: _container(d, "CronJob")["command"].__setitem__(6, "/etc/bulkops/nope.yaml"),
        "not a key of a mounted ConfigMap",
        id="job-spec-not-mounted",
    ),
    pytest.param(
        lambda d: _container(d, "CronJob")["command"].remove("--resume-or-start"),
        "--resume-or-start",
        id="no-resume-or-start",
    ),
    pytest.param(
        lambda d: _cron_spec(d).update(activeDeadlineSeconds=5 * 3600),
        "the deadline would cut the run first",
        id="deadline-within-the-budget",
    ),
    pytest.param(
        lambda d: _set_command(d, "CronJob", "--max-duration", "6h"),
        "the deadline would cut the run first",
        id="budget-beyond-the-deadline",
    ),
    pytest.param(
        lambda d: _set_command(d, "CronJob", "-e", "130"),
        "is not turned into a success",
        id="time-budget-exit-not-remapped",
    ),
    pytest.param(
        lambda d: _cron_spec(d)["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"].append(
            int(ExitCode.OUT_OF_TIME)
        ),
        "(the exits another pod would repeat)",
        id="time-budget-fails-the-job",
    ),
    pytest.param(
        lambda d: _cron_spec(d)["podFailurePolicy"]["rules"].append(
            {
                "action": "Ignore",
                "onExitCodes": {"operator": "In", "values": [int(ExitCode.OUT_OF_TIME)]},
            }
        ),
        "Ignore starts another pod",
        id="ignore-the-time-budget",
    ),
]


@pytest.mark.parametrize(("breakage", "expected"), BROKEN)
def test_a_broken_copy_is_refused(breakage: Breakage, expected: str) -> None:
    """Each deliberate breakage of a copy of the manifests is caught, and named."""
    docs = copy.deepcopy(load_docs())
    breakage(docs)
    problems = check(docs)
    assert any(expected in p for p in problems), problems


def test_the_job_specs_plan_as_of_today() -> None:
    """The ConfigMap's specs also get through planning: relative times resolve, targets exist."""
    specs = _doc(load_docs(), "ConfigMap")["data"]
    names: dict[str, str] = {}
    for key, text in specs.items():
        plan = build_plan(parse_spec(text, base_dir=DEPLOY), datetime.now(UTC))
        assert plan.sources
        names[key] = plan.name
    assert names == {
        "job.yaml": "retention-90d-messages",
        "purge.yaml": "closed-conversations-purge",
    }


def test_the_nightly_pod_prunes_its_own_checkpoint_directory_first() -> None:
    """The CronJob's init container is `bulkops prune --keep N` (N >= 1) on the directory the
    run writes its checkpoints in, mounted from the same claim."""
    cron = _doc(load_docs(), "CronJob")
    (init,) = pod_spec(cron)["initContainers"]
    args = build_parser().parse_args(init["command"][1:])
    assert (init["command"][0], args.command) == ("bulkops", "prune")
    assert args.keep >= 1
    run = bulkops_argv(_container([cron], "CronJob"))
    assert str(args.checkpoint_dir) == option(run, "--checkpoint-dir")
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    volume = {v["name"]: v for v in pod_spec(cron)["volumes"]}[mounts[str(args.checkpoint_dir)]]
    assert volume["persistentVolumeClaim"]["claimName"] == "bulkops-checkpoints"


def test_every_container_command_is_one_the_cli_accepts() -> None:
    """The workloads' command lines parse with bulkops's own argument parser, so a renamed or
    misspelt flag breaks this test rather than the nightly job."""
    commands = [
        bulkops_argv(c)
        for doc in load_docs()
        if doc.get("kind") in WORKLOADS
        for c in containers(doc)
    ]
    assert commands
    for command in commands:
        assert command[0] == "bulkops"
        args = build_parser().parse_args(command[1:])
        assert args.command == "run"
        assert args.resume_or_start or args.shards
