"""``bulkops verify CHECKPOINT``: prove that what a run deleted is gone, with evidence a
reviewer can file.

Every input is checked before the first request, as for ``resume``: the log (a damaged one is
the checkpoint error ``status`` and ``report`` give, exit 2), the spec — which must still plan
what the run froze, with the times it froze, so "90d" is never resolved against today — and the
invocation's config (never the one the log names). Then :mod:`runner.app.verification` fetches
what the log records as gone and lists the selection again, and
:mod:`runner.app.verify_output` writes ``<log>.verify.json`` and says what remains.

A verify changes nothing, but it keeps a journal beside the log (:mod:`runner.app.verify_session`)
so that an interrupted one, run again with the same sample, resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console

from runner.app import loop
from runner.app.display import print_resolution
from runner.app.explain import remote_problem
from runner.app.holding import hold_list
from runner.app.inputs import load_inputs
from runner.app.scope import resume_plan
from runner.app.unattended import api_hosts, check_same_hosts
from runner.app.verification import Prepared, run_verification
from runner.app.verify_output import (
    exit_code,
    print_verification,
    verify_document,
    verify_path,
    write_verify_file,
)
from runner.app.verify_session import Session, begin_session
from runner.engine.holds import HoldList
from runner.errors import AuthError, ExitCode, InputError, PausedTooLong
from runner.log.lock import ensure_not_in_use
from runner.log.replay import read_checkpoint
from runner.plan.shard import parse_shard

__all__ = ["VerifyRequest", "holds_of", "prepare_verify", "verify_checkpoint"]


@dataclass(frozen=True)
class VerifyRequest:
    """A verify as asked for: the log, the spec and config to use, and the sample."""

    checkpoint: Path
    spec: Path | None = None  # default: the spec the log names, relative to the log
    config: Path | None = None
    log_format: str | None = None
    log_level: str | None = None
    sample: int | None = None  # check a random sample of this many targets, not all
    seed: int | None = None  # the sample's seed (drawn, and recorded, when not given)
    restart: bool = False  # discard the journal of an interrupted verify: start over


def prepare_verify(request: VerifyRequest) -> Prepared:
    """Read and check everything a verify needs (InputError, exit 2, on any problem)."""
    if request.seed is not None and request.sample is None:
        raise InputError("--seed picks the sample: give --sample N with it")
    path = request.checkpoint
    ensure_not_in_use(path)  # a log a run is still writing is not verified yet
    replay = read_checkpoint(path)
    header = replay.header
    spec_path = request.spec or (path.parent / header.spec_path)
    # The invocation's config, never the one the log names: a log anyone could have planted
    # must not choose where the credentials go.
    spec, config = load_inputs(spec_path, request.config, request.log_format, request.log_level)
    check_same_hosts(header, api_hosts(config), request.config is not None)
    shard = parse_shard(header.shard) if header.shard else None
    plan, _changed = resume_plan(spec, header, shard, force=False)
    return Prepared(path, replay, plan, config, shard)


def holds_of(prepared: Prepared) -> HoldList | None:
    """What the job holds: targets a listing may still select without their being "remaining".

    The one place legal holds (issue 13 §1) are read for the verified job: its spec's
    ``exclude`` and the invocation's config's ``holds``, hold files read now."""
    return hold_list(prepared.plan, prepared.config)


def verify_checkpoint(request: VerifyRequest, console: Console, err: Console) -> int:
    """Verify the run of ``request.checkpoint``, write the evidence, say what remains; the exit
    code (0 only when everything checked is gone)."""
    prepared = prepare_verify(request)
    holds = holds_of(prepared)
    # Locked before anything is printed or sent: a second verify of the log stops here (exit 5).
    session = begin_session(prepared, request.sample, request.seed, holds, restart=request.restart)
    try:
        return _verify(request, prepared, holds, session, console, err)
    finally:
        session.close()


def _verify(
    request: VerifyRequest,
    prepared: Prepared,
    holds: HoldList | None,
    session: Session,
    console: Console,
    err: Console,
) -> int:
    config, header = prepared.config, prepared.replay.header
    # The cutoffs the listing applies are the run's, frozen in its log: said before it starts.
    resolution = prepared.plan.resolution(api_hosts(config), config.credentials.account_sid)
    print_resolution(resolution, console, f"verifying run {header.run_id} of job {header.job!r}:")
    for warning in prepared.replay.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if prepared.replay.exit_code is None:
        err.print(
            "[yellow]warning:[/] the run has not finished (its log has no end); this verifies "
            "what it did so far",
            highlight=False,
        )
    session.say(console, err)
    try:
        found = loop.run(
            partial(
                run_verification,
                prepared,
                sample=request.sample,
                seed=session.seed,
                holds=holds,
                proven=session.proven,
                journal=session.writer,
                started=session.started,
            ),
        )
    except AuthError as exc:
        err.print(f"[bold red]error:[/] {remote_problem(exc)}; then verify again", highlight=False)
        return ExitCode.AUTH
    except PausedTooLong as exc:
        err.print(
            f"[bold red]stopped:[/] {exc}; nothing was sent into the pause. Verify again after it",
            highlight=False,
        )
        return ExitCode.PAUSED
    path = verify_path(prepared.path)
    document = verify_document(found, prepared.path, resolution.to_json())
    try:
        write_verify_file(path, document)
    except OSError as exc:
        # Checked, but with no evidence to file: not verified.
        print_verification(found, document, None, console, err)
        err.print(
            f"[bold red]not verified:[/] cannot write {path}: {exc.strerror} (exit 1)",
            highlight=False,
        )
        return ExitCode.FAILURES
    session.ended(found)
    print_verification(found, document, path, console, err)
    return exit_code(found)
