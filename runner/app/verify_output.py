"""What a verify found, as the evidence file beside the log and as lines on the terminal.

``<log>.verify.json`` (mode 0600, written aside and renamed into place) follows
``docs/schemas/verify.json``: the run and the log it verified, when, what was checked per kind
(and the sample's seed), what remained — kind and IDs only, never content — and the SHA-256 of
each completion report beside the log, so a reviewer can tie the evidence to the report filed
with it.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Column, Table

from runner import __version__
from runner.app.verification import CheckError, Remains, Verification
from runner.errors import ExitCode, UntrustedFile
from runner.files import create_aside, open_regular
from runner.kinds.base import Target
from runner.kinds.registry import KINDS
from runner.report.output import report_paths

__all__ = [
    "VERIFY_SUFFIX",
    "exit_code",
    "print_verification",
    "verify_document",
    "verify_path",
    "write_verify_file",
]

VERIFY_SUFFIX = ".verify.json"
SCHEMA_VERSION = 1
SHOWN = 20  # remaining targets named on the terminal; the file names them all
_HASH_CHUNK = 1 << 20
_COUNTS = ("checked", "gone", "remained", "errors")


def verify_path(log_path: Path) -> Path:
    """Where the verify of the log at ``log_path`` is written: beside it, ``<stem>.verify.json``."""
    return log_path.with_suffix(VERIFY_SUFFIX)


def exit_code(found: Verification) -> ExitCode:
    """0 when everything checked is gone, else 1."""
    return ExitCode.OK if found.proven else ExitCode.FAILURES


def _shown_id(target_id: str, parent: str | None) -> str:
    return f"{parent}/{target_id}" if parent else target_id


def _remains(remains: Remains) -> dict[str, Any]:
    target = remains.target
    return {
        "kind": target.kind.name,
        "id": target.id,
        "conversation_sid": target.parent,
        "found_by": sorted(remains.found_by),
        **_service_of(target),
    }


def _error(error: CheckError) -> dict[str, Any]:
    target = error.target
    return {
        "kind": target.kind.name,
        "id": target.id,
        "conversation_sid": target.parent,
        "status": error.status,
        "code": error.code,
        **_service_of(target),
    }


def _service_of(target: Target) -> dict[str, str]:
    """A target of one of a job's several Services names that Service (where to look for it);
    in a job of one Service, the document says it once, in ``resolved``."""
    return {} if target.service is None else {"service_sid": target.service}


def report_digests(log_path: Path) -> dict[str, str | None]:
    """The SHA-256 of each completion report beside the log, by file name (None: missing)."""
    digests: dict[str, str | None] = {}
    for path in report_paths(log_path).values():
        try:
            with os.fdopen(open_regular(path, follow=False), "rb") as f:
                digest = hashlib.sha256()
                while chunk := f.read(_HASH_CHUNK):
                    digest.update(chunk)
            digests[path.name] = digest.hexdigest()
        except (OSError, UntrustedFile):
            digests[path.name] = None
    return digests


def verify_document(
    found: Verification, log_path: Path, resolved: dict[str, Any]
) -> dict[str, Any]:
    """The evidence file's content (``docs/schemas/verify.json``); ``resolved`` is what the
    verified job resolves to (its frozen cutoffs, Service, account and hosts)."""
    header = found.replay.header
    by_kind: dict[str, dict[str, int]] = {}
    remaining = sorted(
        found.remains.values(),
        key=lambda r: (r.target.kind.log_index, r.target.parent or "", r.target.id),
    )
    remained = Counter(r.target.kind for r in remaining)
    errors = Counter(e.target.kind for e in found.errors)
    for kind in KINDS:
        counts = {
            "checked": found.checked[kind],
            "gone": found.gone[kind],
            "remained": remained[kind],
            "errors": errors[kind],
        }
        if any(counts.values()):
            by_kind[kind.name] = counts
    return {
        "version": SCHEMA_VERSION,
        "bulkops": __version__,
        "job": header.job,
        "run_id": header.run_id,
        "shard": header.shard,
        "checkpoint": log_path.name,
        "run_exit_code": found.replay.exit_code,
        "resolved": resolved,
        "started": _iso(found.started),
        "finished": _iso(found.finished) if found.finished else None,
        "resumed": found.resumed,
        "verified": found.proven,
        "exit_code": int(exit_code(found)),
        "population": found.population,
        "sample": None
        if found.sample_size is None
        else {"size": found.sample_size, "seed": found.seed},
        "checked": sum(found.checked.values()),
        "by_kind": by_kind,
        "listing": {
            "sources": found.listed_sources,
            "held": found.held,
            "errors": [
                {"source": e.source, "path": e.path, "status": e.status, "code": e.code}
                for e in found.listing_errors
            ],
            **({} if found.services is None else {"services": list(found.services)}),
        },
        "unfinished": {
            "failed": found.unfinished["failed"],
            "pending": found.unfinished["pending"],
        },
        "remaining": [_remains(r) for r in remaining],
        "errors": [_error(e) for e in found.errors],
        "reports": report_digests(log_path),
    }


def _iso(moment: Any) -> str:
    text: str = moment.isoformat().replace("+00:00", "Z")
    return text


def write_verify_file(path: Path, document: dict[str, Any]) -> None:
    """``document`` as JSON at ``path``: written aside (new, 0600, never through a link) and
    renamed into place, so a reviewer never finds half of one."""
    aside, fd = create_aside(path)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(aside, path)


def print_verification(
    found: Verification,
    document: dict[str, Any],
    path: Path | None,
    console: Console,
    err: Console,
) -> None:
    """The counts per kind, what remains (the first :data:`SHOWN`), then the verdict with the
    evidence file (``path``; None when it could not be written: the caller says why)."""
    sample, header = document["sample"], found.replay.header
    what = (
        f"a sample of {document['checked']:,} (seed {sample['seed']}) of the {found.population:,}"
        if sample
        else f"{document['checked']:,} of the {found.population:,}"
    )
    console.print(
        f"verify of run {header.run_id} (job {header.job}): fetched {what} targets the log "
        f"records as gone; listed {found.listed_sources} sources again",
        highlight=False,
    )
    table = Table("kind", *(Column(c, justify="right") for c in _COUNTS))
    for kind in KINDS:
        counts = document["by_kind"].get(kind.name)
        if counts is not None:
            table.add_row(kind.label, *(f"{counts[c]:,}" for c in _COUNTS))
    console.print(table)
    for line in _problems(found, document):
        err.print(line, highlight=False, markup=False)
    if path is None:
        return
    if found.proven:
        console.print(f"verified: everything checked is gone. Evidence: {path}", highlight=False)
    else:
        err.print(f"[bold red]not verified[/] (exit 1). Evidence: {path}", highlight=False)


def _problems(found: Verification, document: dict[str, Any]) -> Iterator[str]:
    remaining = document["remaining"]
    if remaining:
        yield f"{len(remaining)} still there:"
        for row in remaining[:SHOWN]:
            shown = _shown_id(row["id"], row["conversation_sid"])
            where = f" in {row['service_sid']}" if "service_sid" in row else ""
            yield f"  {row['kind']} {shown}{where} (found by {' and '.join(row['found_by'])})"
        if len(remaining) > SHOWN:
            yield f"  … and {len(remaining) - SHOWN} more, all in the verify file"
    if found.errors:
        yield (
            f"{len(found.errors)} targets could not be checked (neither 200 nor 404 after "
            "retries); run verify again"
        )
    for error in found.listing_errors:
        yield (
            f"source {error.source} ({error.path}) could not be listed again (HTTP "
            f"{error.status}); run verify again"
        )
    unfinished = document["unfinished"]
    if found.unfinished:
        retry = " --retry-failed" if unfinished["failed"] else ""
        yield (
            f"the run left {unfinished['failed']} targets failed and {unfinished['pending']} "
            f"pending: nothing proves them gone; `bulkops resume{retry} {found.replay.path}`, "
            "then verify again"
        )
    if document["reports"] and None in document["reports"].values():
        missing = ", ".join(name for name, d in document["reports"].items() if d is None)
        yield f"no completion report to tie the evidence to: {missing} missing"
