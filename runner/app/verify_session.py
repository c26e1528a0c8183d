"""One session of a verify and its journal (:mod:`runner.log.verify_journal`): whether it
continues an interrupted verification of the same log or starts over, and why.

A journal is continued only when it was begun for the same log as it is now (its run, size,
lines and digests: a resume since then changes what is to be proven), the same sample and seed
(a sampled verify resumed without ``--seed`` takes the seed it recorded, so it checks the same
sample), the same legal holds and the same bulkops. Anything else is said in a warning and the
verification starts over. When a verification comes to a verdict on everything it checked, its
journal is removed: a later verify of the log proves it again from scratch (evidence is
time-stamped). One that ended with checks it could not make (a 500, a listing cut short) keeps
it: run again, it makes only those.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import structlog
from rich.console import Console

from runner import __version__
from runner.app.verification import Prepared, Verification
from runner.engine.holds import HoldList
from runner.errors import CheckpointError
from runner.log.verify_journal import (
    JournalHeader,
    JournalWriter,
    OpenJournal,
    Proven,
    log_digests,
    open_journal,
)

__all__ = ["Session", "begin_session", "holds_digest"]

log = structlog.get_logger("bulkops.verify")


@dataclass
class Session:
    """A verify's journal, open and locked, and what this session takes from it."""

    journal: OpenJournal
    seed: int | None
    proven: Proven | None  # what an earlier session proved (None: starting over)
    started: datetime  # when the verification began (its first session)
    writer: JournalWriter
    notes: list[tuple[bool, str]] = field(default_factory=list)  # (a warning?, text)

    def say(self, console: Console, err: Console) -> None:
        """Say whether this session continues a verification, and why one was not continued."""
        for warning, text in self.notes:
            if warning:
                err.print(f"[yellow]warning:[/] {text}", highlight=False, markup=False)
            else:
                console.print(text, highlight=False, markup=False)

    def ended(self, found: Verification) -> None:
        """The evidence is written: a verification with a verdict on everything it checked is
        done (its journal removed); one with checks it could not make keeps it."""
        if found.errors or found.listing_errors:
            return
        try:
            self.journal.finish()
        except OSError as exc:
            log.warning("verify_journal_not_removed", error=exc.strerror)

    def close(self) -> None:
        """Release the journal's lock."""
        self.journal.close()


def holds_digest(holds: HoldList | None) -> str | None:
    """A digest of what ``holds`` holds (inline, in each file as read now, by attributes): a
    listing of another session excepted what these except only if it is the same."""
    if holds is None:
        return None
    held = {
        "listed": sorted(holds.listed),
        "files": [[str(f.path), sorted(f.held)] for f in holds.files],
        "wheres": [dict(w) for w in holds.wheres],
    }
    data = orjson.dumps(held, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(data).hexdigest()


def begin_session(
    prepared: Prepared,
    sample: int | None,
    seed: int | None,
    holds: HoldList | None,
    *,
    restart: bool = False,
) -> Session:
    """Open and lock the journal of the log (LockedOut: another verify holds it; InputError:
    something not a journal of this user's is at its path), and continue the verification it
    records if it is this one, else start over."""
    replay = prepared.replay
    journal = open_journal(prepared.path, replay.size, restart=restart)
    try:
        return _begin(journal, prepared, sample, seed, holds, restart)
    except OSError as exc:
        journal.close()
        raise CheckpointError(
            f"cannot write verify journal {journal.path}: {exc.strerror}; the verify writes "
            "beside the log"
        ) from None
    except BaseException:
        journal.close()
        raise


def _begin(
    journal: OpenJournal,
    prepared: Prepared,
    sample: int | None,
    seed: int | None,
    holds: HoldList | None,
    restart: bool,
) -> Session:
    replay, prior = prepared.replay, journal.proven
    now = datetime.now(UTC)
    if sample is not None and seed is None:
        # The same command continues the same sample: the seed the journal recorded.
        same = prior is not None and prior.header.sample_size == sample
        seed = prior.header.seed if same and prior is not None else secrets.randbits(32)
    head, tail = log_digests(prepared.path, replay.size)
    wanted = JournalHeader(
        run_id=replay.header.run_id,
        log_size=replay.size,
        log_lines=replay.lines,
        log_head=head,
        log_tail=tail,
        sample_size=sample,
        seed=seed,
        holds=holds_digest(holds),
        version=__version__,
        started=now.isoformat(),
    )
    notes: list[tuple[bool, str]] = []
    path = journal.path
    over = "verifying from the start"
    if restart:
        notes.append((False, f"verify journal {path} discarded (--restart): {over}"))
    elif journal.ignored is not None:
        notes.append((True, f"verify journal {path} ignored: {journal.ignored}; {over}"))
    why = None if prior is None else prior.header.mismatch(wanted)
    if prior is not None and why is None:
        journal.resume(now.isoformat())
        started = datetime.fromisoformat(prior.header.started)
        notes.append(
            (
                False,
                f"resuming the verify begun {prior.header.started} (journal {path}): "
                f"{len(prior.verdicts):,} targets already fetched and "
                f"{len(prior.sources)} sources already listed again are not asked again",
            )
        )
    else:
        if why is not None:
            notes.append((True, f"verify journal {path} ignored: {why}; {over}"))
        journal.start(wanted)
        prior, started = None, now
    writer = JournalWriter(journal.handle)
    writer.on_error = lambda exc: log.warning("verify_journal_failed", error=exc.strerror)
    return Session(journal, seed, prior, started, writer, notes)
