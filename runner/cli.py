"""The ``bulkops`` command line.

Every subcommand validates all of its input before the first request; bad input prints each
problem and exits 2. Exit codes are listed in :class:`runner.errors.ExitCode` and the README.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO, cast

from runner import __version__
from runner.errors import ExitCode, InputError, LockedOut, SafetyAbort

# The commands' modules (the engine, aiohttp, rich) are imported when a command runs, not here:
# `bulkops --version` and `--help` answer without loading them (seconds on a cold start).
if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from runner.app.job import PlanResult, RunOptions
    from runner.app.resume import ResumeRequest
    from runner.app.run import RunRequest
    from runner.app.verify import VerifyRequest
    from runner.plan.planner import JobPlan
    from runner.spec.resolved import Resolution


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are a JSON line when JSON logs were asked for (nothing but
    JSON on stderr), still exit 2."""

    json_errors = False  # set by main() from the raw arguments, before they are parsed

    def error(self, message: str) -> NoReturn:
        """Report a usage error and exit 2."""
        if not self.json_errors:
            super().error(message)
        import orjson

        line = {"event": "bad_usage", "level": "error", "command": self.prog, "error": message}
        self.exit(ExitCode.BAD_INPUT, orjson.dumps(line).decode() + "\n")


def _wants_json(args: list[str]) -> bool:
    return any(
        a == "--log-format=json" or (a == "--log-format" and b == "json")
        for a, b in zip(args, [*args[1:], ""], strict=True)
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line of `bulkops` (also read by the tests of the deployment manifests)."""
    parser = _Parser(
        prog="bulkops",
        description="Delete Twilio Conversations, Orchestrator and Memory data in bulk, resumably.",
    )
    parser.add_argument("--version", action="version", version=f"bulkops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def logging_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--log-format",
            choices=("auto", "console", "json"),
            help="override the config's; json: nothing but JSON on stdout and stderr",
        )
        p.add_argument(
            "--log-level",
            choices=("debug", "info", "warning", "error"),
            help="override the config's",
        )
        p.add_argument(
            "--log-file",
            type=Path,
            metavar="PATH",
            help="append the logs here instead of standard error (format: --log-format)",
        )

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="config file (default: none; env only)")
        logging_options(p)

    def event_loop(p: argparse.ArgumentParser) -> None:
        # The commands that drive the engine (runner.app.loop says which loop runs them).
        p.add_argument(
            "--loop",
            choices=("auto", "asyncio", "uvloop"),
            default="auto",
            help="the event loop: uvloop (faster) or asyncio's own; auto (default): uvloop "
            "when it is installed",
        )

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-o",
            "--output",
            choices=("text", "json"),
            default="text",
            help="json: one JSON document on standard output (schemas in docs/schemas/)",
        )

    def driven(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--max-duration",
            type=duration,
            metavar="DURATION",
            help="stop taking new work after this long (e.g. 6h), exit 7, resumable",
        )
        p.add_argument(
            "--metrics-textfile",
            type=Path,
            metavar="PATH",
            help="write Prometheus metrics here (node_exporter textfile format), every 15 s "
            "and at the end",
        )
        p.add_argument(
            "--metrics-port", type=int, metavar="PORT", help="serve /metrics on 127.0.0.1:PORT"
        )
        # Batch jobs that no scraper may catch alive push to a Prometheus Pushgateway.
        p.add_argument(
            "--metrics-push",
            type=push_url,
            metavar="URL",
            help="push metrics to this Prometheus Pushgateway (e.g. http://pushgateway:9091) "
            "periodically and at the end; grouped by job and shard",
        )
        p.add_argument(
            "--metrics-push-interval",
            type=duration,
            default=30.0,
            metavar="DURATION",
            help="with --metrics-push: time between pushes, e.g. 1m (default 30s)",
        )
        p.add_argument(
            "--max-deletions",
            type=positive,
            metavar="N",
            help="the run deletes at most N targets in all (its earlier processes included), "
            "in place of the spec's safety.max_deletions; no spec edit, so no --force",
        )

    run = sub.add_parser("run", help="run a job spec")
    run.add_argument("job", type=Path, help="job spec (YAML)")
    run.add_argument("--checkpoint", type=Path, help="checkpoint log to create")
    run.add_argument(
        "--checkpoint-dir", type=Path, help="where checkpoints go (overrides the config's)"
    )
    run.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")
    run.add_argument(
        "--resume-or-start",
        action="store_true",
        help="for cron: continue this job's unfinished run if there is one, else start one",
    )
    run.add_argument(
        "--min-interval",
        type=duration,
        default=0.0,
        metavar="DURATION",
        help="with --resume-or-start: do nothing if the last run finished well less than "
        "this long ago (e.g. 20h)",
    )
    run.add_argument("--shard", help="run shard I of N (0-based), e.g. --shard 0/4")
    run.add_argument(
        "--shards",
        type=int,
        help="shard count; the index comes from JOB_COMPLETION_INDEX (Kubernetes Indexed Job)",
    )
    driven(run)
    common(run)
    event_loop(run)

    plan = sub.add_parser("plan", help="show what a job would delete (no DELETE is sent)")
    plan.add_argument("job", type=Path)
    plan.add_argument(
        "--out", type=Path, metavar="PLAN", help="write the exact list of targets, for `apply`"
    )
    plan.add_argument("--shard", help="plan shard I of N only, e.g. --shard 0/4")
    plan.add_argument("--shards", type=int, help="shard count; index from JOB_COMPLETION_INDEX")
    common(plan)
    output(plan)
    event_loop(plan)

    apply = sub.add_parser("apply", help="delete exactly the targets a reviewed plan lists")
    apply.add_argument("plan", type=Path, help="a plan written by `bulkops plan JOB --out PLAN`")
    apply.add_argument("--spec", type=Path, help="job spec, if it moved since the plan was made")
    apply.add_argument(
        "--max-age",
        type=duration,
        default=24 * 3600.0,
        metavar="DURATION",
        help="refuse a plan older than this (default 24h)",
    )
    apply.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation on a terminal"
    )
    apply.add_argument(
        "--confirm-above",
        type=int,
        default=1000,
        metavar="N",
        help="on a terminal, ask before deleting more than N targets (default 1000)",
    )
    apply.add_argument(
        "--checkpoint-dir", type=Path, help="where checkpoints go (overrides the config's)"
    )
    driven(apply)
    common(apply)
    event_loop(apply)
    output(apply)

    resume = sub.add_parser("resume", help="continue a run from its checkpoint log")
    resume.add_argument("checkpoint", type=Path)
    resume.add_argument("--spec", type=Path, help="job spec, if it moved since the run started")
    resume.add_argument("--retry-failed", action="store_true", help="drive failed targets again")
    resume.add_argument("--force", action="store_true", help="resume although the spec changed")
    driven(resume)
    common(resume)
    event_loop(resume)

    status = sub.add_parser("status", help="where a run stands: its state in words, counts, rate")
    status.add_argument(
        "checkpoint",
        type=Path,
        metavar="CHECKPOINT|JOB",
        help="a run's checkpoint log, or a job spec (.yaml): its latest run",
    )
    status.add_argument("--checkpoint-dir", type=Path, help="with a JOB: where its checkpoints are")
    status.add_argument("--shard", help="with a JOB run in shards: shard I/N's latest run")
    common(status)  # --config: with a JOB, the config naming checkpoint_dir
    output(status)

    report = sub.add_parser("report", help="completion report of a run")
    report.add_argument("checkpoint", type=Path)
    from runner.report.formats import report_formats

    report.add_argument("--format", choices=tuple(report_formats()), default="csv")
    report.add_argument("--out", type=Path, help="write here instead of standard output")
    report.add_argument(
        "--summary", action="store_true", help="the outcome counts per kind, not every target"
    )
    logging_options(report)
    output(report)

    verify = sub.add_parser(
        "verify",
        help="prove a run's deletions: everything it deleted answers 404 (GETs only); an "
        "interrupted verify resumes",
    )
    verify.add_argument("checkpoint", type=Path)
    verify.add_argument("--spec", type=Path, help="job spec, if it moved since the run started")
    verify.add_argument(
        "--sample",
        type=positive,
        metavar="N",
        help="fetch a random sample of N of the targets the run deleted, not all of them",
    )
    verify.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="with --sample: the sample's seed (default: random; a resumed verify keeps its own)",
    )
    verify.add_argument(
        "--restart",
        action="store_true",
        help="discard the journal of an interrupted verify and verify from the start "
        "(by default a verify of the same log and sample resumes where it stopped)",
    )
    common(verify)
    event_loop(verify)

    demo = sub.add_parser(
        "demo", help="a full purge of jobs/demo.yaml against the built-in emulator"
    )
    demo.add_argument("--job", type=Path, default=None, help="another job spec to run")
    demo.add_argument("--checkpoint-dir", type=Path, default=None)
    logging_options(demo)
    event_loop(demo)

    prune = sub.add_parser(
        "prune", help="delete the files of old finished runs from a checkpoint directory"
    )
    prune.add_argument(
        "--keep",
        type=run_count,
        required=True,
        metavar="N",
        help="keep the N newest runs of each job (and shard); of older ones, delete those that "
        "finished (exit 0 or 1)",
    )
    prune.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("checkpoints"),
        help="the checkpoint directory (default: ./checkpoints)",
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would go; delete nothing")
    logging_options(prune)

    sub.add_parser(
        "emulator", help="serve the Twilio emulator (see `bulkops emulator --help`)", add_help=False
    )
    return parser


# Whether main() paused the cyclic garbage collector for this process's start-up.
_gc_paused = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    global _gc_paused
    if argv is not None:
        return _main(list(argv))
    # This process's own start (the console script, `python -m runner`; a caller passing its
    # own arguments keeps its collector as it is): the cyclic collector rests while the
    # command's modules load. They allocate hundreds of thousands of objects, none of them
    # garbage, which it would otherwise scan some 150 times (issue 16 §1: about a tenth of the
    # start-up's CPU). _resume_gc() wakes it once they are loaded.
    if gc.isenabled():
        gc.disable()
        _gc_paused = True
    try:
        return _main(sys.argv[1:])
    finally:
        _resume_gc()


def _resume_gc() -> None:
    """Wake the collector main() paused, the start-up's objects frozen first: they live as long
    as the process, so no collection need ever scan them again."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


def _main(args_list: list[str]) -> int:
    if args_list == ["--version"]:
        # Before anything is imported: a version check (a container's health probe, a
        # packaging test) need not load the engine.
        print(f"bulkops {__version__}")
        return ExitCode.OK
    if args_list[:1] == ["emulator"]:
        from runner.emulator import main as emulator_main

        _resume_gc()  # a server, for as long as it is asked to serve
        return emulator_main(args_list[1:])
    _Parser.json_errors = _wants_json(args_list)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command == "report" and args.output == "json" and not args.summary:
        parser.error("report: -o json goes with --summary (the whole report: --format json)")
    from runner.app import logs

    # io.TextIOBase has every method a TextIO has; typeshed does not say so.
    out = cast(TextIO, ClosedPipeSafe(sys.stdout))
    # With -o json, standard output holds the document alone: what a person reads goes to
    # standard error. With JSON logs, both are log events (runner.app.logs).
    document = getattr(args, "output", "text") == "json"
    console = logs.CommandConsole(file=None if document else out, stderr=document, soft_wrap=True)
    err = logs.CommandConsole(stderr=True, soft_wrap=True, level="warning")
    try:
        logs.choose(args.log_format, args.log_level, args.log_file)
        return _dispatch(args, console, err, out)
    except InputError as exc:  # the --log-file
        _print_problems(err, exc)
        return ExitCode.BAD_INPUT
    finally:
        out.flush()
        logs.release()


def _dispatch(args: argparse.Namespace, console: Console, err: Console, out: TextIO) -> int:
    """Run the subcommand; every way it can fail becomes a message and an exit code."""
    from runner.app import logs
    from runner.app.resume import resume_checkpoint
    from runner.app.run import dry_run, run_job
    from runner.internal import diagnose, leaves

    _resume_gc()  # the commands' modules are loaded: what follows runs with the collector on

    # Until a command reads its config: log lines go to stderr (or --log-file), never into a
    # report on stdout.
    logs.configure()
    try:
        if getattr(args, "loop", None) is not None:
            from runner.app import loop

            loop.choose(args.loop)  # uvloop asked for and missing: exit 2, nothing sent
        if args.command == "run" and args.dry_run:
            return dry_run(run_request(args), console, err, None)
        if args.command == "run":
            return run_job(run_request(args), console, err)
        if args.command == "plan":
            return dry_run(run_request(args), console, err, args.out, _plan_document(args, out))
        if args.command == "apply":
            return _cmd_apply(args, console, err, out)
        if args.command == "resume":
            return resume_checkpoint(resume_request(args), console, err)
        if args.command == "status":
            return _cmd_status(args, console, out)
        if args.command == "report":
            return _cmd_report(args, console, out)
        if args.command == "verify":
            from runner.app.verify import verify_checkpoint

            return verify_checkpoint(verify_request(args), console, err)
        if args.command == "prune":
            from runner.app.prune import print_pruning, prune

            pruning = prune(args.checkpoint_dir, args.keep, dry_run=args.dry_run)
            print_pruning(pruning, console, err)
            return pruning.exit_code
        if args.command == "demo":
            from runner.app.demo import run_demo

            code: int = run_demo(args.job, args.checkpoint_dir, console, err)
            return code
    except InputError as exc:
        _print_problems(err, exc)
        return ExitCode.BAD_INPUT
    except SafetyAbort as exc:
        err.print(f"[bold red]aborted:[/] {exc}", highlight=False)
        return ExitCode.ABORTED
    except LockedOut as exc:
        err.print(f"[bold yellow]locked:[/] {exc}", highlight=False)
        return ExitCode.LOCKED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as exc:
        bad_input = [e for e in leaves(exc) if isinstance(e, InputError)]
        if bad_input and len(bad_input) == len(leaves(exc)):
            # Bad input met inside a task group (a manifest edited while it was read).
            _print_problems(err, InputError([p for e in bad_input for p in e.problems]))
            return ExitCode.BAD_INPUT
        # A bug, or an answer nothing classified: one line and exit 8, never a traceback (its
        # text may carry a response body); the frames go to the log. A run meets its own
        # faults in runner.app.job and records them in its checkpoint; this is for the rest.
        fault = diagnose(exc, {}, default=f"`bulkops {args.command}`")
        fault.log()
        err.print(
            f"[bold red]internal error:[/] {fault.describe()} (details: the internal_error log "
            "event); please report it. Nothing unfinished is recorded as done.",
            highlight=False,
        )
        return ExitCode.INTERNAL
    return ExitCode.BAD_INPUT


class ClosedPipeSafe(io.TextIOBase):
    """Standard output that a closed reader (``bulkops plan … | head -1``) cannot crash: once a
    write meets a closed pipe, the rest goes to /dev/null (the fd too, so Python's own flush at
    exit finds nothing to complain about) and the command ends with the code it would have."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.lost = False

    @property
    def encoding(self) -> str:  # type: ignore[override]  # io.TextIOBase declares it read-only
        """The underlying stream's encoding (rich reads it)."""
        return getattr(self._stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        """Whether the underlying stream is a terminal."""
        return self._stream.isatty()

    def fileno(self) -> int:
        """The underlying stream's file descriptor."""
        return self._stream.fileno()

    def write(self, text: str) -> int:
        """Write ``text``, or drop it once the reader has gone."""
        if not self.lost:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        """Flush, unless the reader has gone."""
        if not self.lost:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.lost = True
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


def _print_problems(err: Console, exc: InputError) -> None:
    from runner.app import logs

    if logs.json_only() and isinstance(err, logs.CommandConsole):
        err.event("bad_input", level="error", problems=list(exc.problems), sent_nothing=True)
        return
    err.print("[bold red]error:[/] bulkops did not start; nothing was sent.", highlight=False)
    for problem in exc.problems:
        err.print(f"  - {problem}", highlight=False, markup=False)


def duration(text: str) -> float:
    """An argparse type: a duration like 90s, 45m, 6h, 1d or 2w, in seconds."""
    from runner.kinds.timespec import duration_seconds

    try:
        return duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def push_url(text: str) -> str:
    """An argparse type: a Pushgateway URL like http://pushgateway:9091."""
    from runner.app.metrics_push import gateway_url  # prometheus_client only when asked for

    try:
        return gateway_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_count(text: str) -> int:
    """An argparse type: how many runs ``prune --keep`` keeps, 1 or more."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of runs") from None
    if count < 1:
        raise argparse.ArgumentTypeError(
            f"{count} keeps no run: give 1 or more (the newest run of a job is what "
            "--resume-or-start and --min-interval read)"
        )
    return count


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def verify_request(args: argparse.Namespace) -> VerifyRequest:
    """The verify the command line asks for."""
    from runner.app.verify import VerifyRequest

    return VerifyRequest(
        checkpoint=args.checkpoint,
        spec=args.spec,
        config=args.config,
        log_format=args.log_format,
        log_level=args.log_level,
        sample=args.sample,
        seed=args.seed,
        restart=args.restart,
    )


def run_options(args: argparse.Namespace) -> RunOptions:
    """The run options given on the command line."""
    from runner.app.job import RunOptions

    return RunOptions(
        max_duration=args.max_duration,
        metrics_textfile=args.metrics_textfile,
        metrics_port=args.metrics_port,
        metrics_push=args.metrics_push,
        metrics_push_interval=args.metrics_push_interval,
        max_deletions=args.max_deletions,
    )


def run_request(args: argparse.Namespace) -> RunRequest:
    """The run (or, for ``plan``, the dry run) the command line asks for."""
    from runner.app.job import NO_OPTIONS
    from runner.app.run import RunRequest

    driven = args.command == "run"
    return RunRequest(
        job=args.job,
        config=args.config,
        log_format=args.log_format,
        log_level=args.log_level,
        checkpoint=args.checkpoint if driven else None,
        checkpoint_dir=args.checkpoint_dir if driven else None,
        shard=args.shard,
        shards=args.shards,
        resume_or_start=driven and args.resume_or_start,
        min_interval=args.min_interval if driven else 0.0,
        options=run_options(args) if driven else NO_OPTIONS,
    )


def _plan_document(
    args: argparse.Namespace, out: TextIO
) -> Callable[[JobPlan, PlanResult, Resolution], None] | None:
    """With ``-o json``: what writes the plan's document to standard output."""
    if args.output != "json":
        return None
    from runner.app.documents import plan_document, write_document

    def write(plan: JobPlan, result: PlanResult, resolution: Resolution) -> None:
        write_document(out, plan_document(plan, result, resolution, args.out))

    return write


def _cmd_apply(args: argparse.Namespace, console: Console, err: Console, out: TextIO) -> int:
    from runner.app.apply import prepare_apply, run_applied
    from runner.app.display import print_resolution
    from runner.app.documents import run_document, write_document
    from runner.app.outcome import continue_with, finish
    from runner.app.unattended import api_hosts

    applying = prepare_apply(
        args.plan,
        args.spec,
        args.config,
        max_age=args.max_age,
        log_format=args.log_format,
        log_level=args.log_level,
        options=run_options(args),
    )
    total = applying.plan_file.total
    print_resolution(
        applying.plan.resolution(
            api_hosts(applying.config), applying.config.credentials.account_sid
        ),
        console,
        f"apply plan {args.plan} of job {applying.plan.name!r} ({total} targets):",
    )
    if total > args.confirm_above and not args.yes and sys.stdin.isatty():
        answer = console.input(f"delete the {total} targets plan {args.plan} lists? type yes: ")
        if answer.strip().lower() != "yes":
            err.print("not confirmed; nothing was sent.", highlight=False)
            return ExitCode.ABORTED
    result = run_applied(
        applying, args.checkpoint_dir, args.config, console, options=run_options(args)
    )
    code = finish(result, console, err)
    if args.output == "json":
        write_document(out, run_document(result, continue_with(result)))
    return code


def resume_request(args: argparse.Namespace) -> ResumeRequest:
    """The resume the command line asks for."""
    from runner.app.resume import ResumeRequest

    return ResumeRequest(
        checkpoint=args.checkpoint,
        spec=args.spec,
        config=args.config,
        log_format=args.log_format,
        log_level=args.log_level,
        retry_failed=args.retry_failed,
        force=args.force,
        options=run_options(args),
    )


def _cmd_status(args: argparse.Namespace, console: Console, out: TextIO) -> int:
    from runner.app.documents import status_document, write_document
    from runner.app.outcome import print_status
    from runner.app.status import is_spec, latest_log, run_status
    from runner.log.replay import read_checkpoint
    from runner.plan.shard import parse_shard

    path = args.checkpoint
    if is_spec(path):
        shard = None if args.shard is None else parse_shard(args.shard)
        path = latest_log(path, args.config, args.checkpoint_dir, shard)
    status = run_status(read_checkpoint(path), path)
    if args.output == "json":
        write_document(out, status_document(status))
    else:
        print_status(status, console)
    return ExitCode.OK


def _cmd_report(args: argparse.Namespace, console: Console, out: TextIO) -> int:
    from runner.app.documents import summary_document, write_document
    from runner.app.outcome import print_summary
    from runner.log.replay import read_checkpoint
    from runner.report.completion import render
    from runner.report.output import write_report_file

    replay = read_checkpoint(args.checkpoint)
    if args.summary and args.output == "json":
        write_document(out, summary_document(replay, args.checkpoint))
        return ExitCode.OK
    if args.summary:
        print_summary(replay, console)
        return ExitCode.OK
    text = render(args.format, replay)
    if args.out:
        write_report_file(args.out, text)
    else:
        out.write(text)
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
