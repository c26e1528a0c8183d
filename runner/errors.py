"""The exceptions bulkops raises, as one tree rooted at :class:`BulkopsError`, and the exit
codes they end in (:class:`ExitCode`).

::

    BulkopsError
    ├── InputError                 bad input from the user; exit code 2, nothing sent
    │   ├── SpecError              the job spec (YAML, manifests) is invalid
    │   ├── ConfigError            the config or environment is invalid
    │   ├── CheckpointError        a checkpoint cannot be read, locked or resumed
    │   │   └── UntrustedLine      a whole line no bulkops run writes (an edited log)
    │   └── UntrustedFile          a file or directory bulkops must not read or write (a link,
    │                              a FIFO or device, another user's file, a directory others
    │                              can write, a file beyond its size bound)
    ├── RemoteError                Twilio (or the emulator) answered with an error
    │   ├── RateLimited            HTTP 429: retry after Retry-After
    │   │   └── Throttled          a 429 that also says how many requests were in flight
    │   ├── TransientError         5xx, timeouts, resets, bad bodies, 20009: retry with backoff
    │   ├── AuthError              401/403: credentials are wrong; the run stops
    │   ├── PermanentError         other 4xx: the target fails, the run goes on
    │   └── BadListing             a list reply it will not trust or follow; the source fails
    ├── OperationFailed            an async Operation ended FAILED or CANCELLED
    ├── SafetyAbort                a safety limit stopped the run; exit code 3
    ├── LockedOut                  another process runs the same job (or shard); exit code 5
    ├── PausedTooLong              a Retry-After beyond retry.max_pause; the run stops, exit 9
    ├── Stopped                    the run is stopping: a DELETE not yet sent is not sent
    └── Withheld                   a legal hold took the target just before its DELETE left
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    """The process exit codes, one per way a command ends; the README's table lists them."""

    OK = 0
    FAILURES = 1
    BAD_INPUT = 2
    ABORTED = 3
    AUTH = 4
    LOCKED = 5
    CHECKPOINT = 6
    OUT_OF_TIME = 7
    INTERNAL = 8  # an unexpected fault inside bulkops: the log is intact, resume goes on
    PAUSED = 9  # the server asked for a pause longer than retry.max_pause: resumable
    INTERRUPTED = 130


class BulkopsError(Exception):
    """Base of every error bulkops raises on purpose."""


class InputError(BulkopsError):
    """Bad input: the CLI prints every problem and exits 2 before any request is sent."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("\n".join(self.problems))


class SpecError(InputError):
    """The job spec or one of its manifests is invalid."""


class ConfigError(InputError):
    """The config file or the environment it refers to is invalid."""


class CheckpointError(InputError):
    """A checkpoint log cannot be used: locked, corrupt, or for another job."""


class UntrustedFile(InputError):
    """A path that fails a trust check; ``reason`` completes a sentence about the path
    ("is a symbolic link") and ``fix`` says what to do. Callers usually re-raise it as their own
    InputError, naming the field the path came from."""

    def __init__(self, path: object, reason: str, fix: str) -> None:
        self.path = path
        self.reason = reason
        self.fix = fix
        super().__init__(f"{path} {reason}; {fix}")


class UntrustedLine(CheckpointError):
    """A whole, well-formed checkpoint line that names something no bulkops run writes (an ID
    not of its kind's shape, a message without its conversation): an edited or foreign log."""


class RemoteError(BulkopsError):
    """An error answer from the remote API, with Twilio's code when it gave one."""

    # Where it came from, for the person reading the error: scheme, host and path only (no
    # credentials, no query). Set by the client, which alone knows the URL.
    url: str | None = None
    # Whether an earlier attempt of the same request met a fault after which the server may
    # have acted on it (a timeout, a reset, a 5xx, an unreadable 2xx): a 404 may then answer
    # bulkops' own delete. Set by the requester, which alone retries.
    after_fault: bool = False

    def __init__(self, status: int, code: int | None, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"HTTP {status} (code {code}): {message}")


class RateLimited(RemoteError):
    """HTTP 429; ``retry_after`` is the server's hint in seconds, when it sent one."""

    def __init__(
        self, status: int, code: int | None, message: str, retry_after: float | None
    ) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class Throttled(RateLimited):
    """A 429 that also says how many requests the account had in flight, when Twilio told us
    (``Twilio-Concurrent-Requests``): what tells a concurrency limit from a rate limit."""

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        retry_after: float | None,
        concurrent: int | None,
    ) -> None:
        super().__init__(status, code, message, retry_after)
        self.concurrent = concurrent


class TransientError(RemoteError):
    """A fault worth retrying: 5xx, timeout, reset connection, unreadable body, 20009."""


class AuthError(RemoteError):
    """The credentials were refused; retrying cannot help and the run must stop."""


class PermanentError(RemoteError):
    """A 4xx that retrying cannot fix; the target is recorded as failed."""


class BadListing(RemoteError):
    """A list reply bulkops will not trust or follow: a malformed envelope, a page loop, a next
    page elsewhere, or items it had to leave out (an invalid ID, an unreadable timestamp).

    The source it came from is recorded as a discovery error (exit 1), so a run that could not
    read all of its selection never ends as a success; ``path`` names the listing.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(0, None, f"listing {path}: {message}")

    def __str__(self) -> str:
        return self.message


class OperationFailed(BulkopsError):
    """An asynchronous Operation ended FAILED or CANCELLED."""

    def __init__(
        self, operation_id: str, status: str, detail: str, code: int | None = None
    ) -> None:
        self.operation_id = operation_id
        self.status = status
        self.detail = detail
        self.code = code
        super().__init__(f"operation {operation_id} ended {status}: {detail}")


class SafetyAbort(BulkopsError):
    """A safety limit (max_deletions, max_failure_rate) stopped the run."""


class LockedOut(BulkopsError):
    """Another process is running the same job; exit code 5."""


class Stopped(BulkopsError):
    """The run is stopping: a DELETE that has not left yet is not sent (the target stays
    *requested* in the log, and a resume drives it)."""


class Withheld(BulkopsError):
    """A request's last check, made once its limits let it go and just before it is sent,
    withheld it: a legal hold added mid-run covers the target (nothing was sent)."""


class Requeued(BulkopsError):
    """A request its limits had let go was not sent once a connection was free for it: its last
    check failed there (a 429 paused one of its scopes, or a hold came to cover its target, while
    it waited for the connection). It queues at its limits again, where the same checks decide.
    Raised by the client, caught by :class:`runner.wire.requester.Requester`; never further."""


class PausedTooLong(BulkopsError):
    """The server asked to pause a scope for longer than ``retry.max_pause``: nothing waits
    that long, the run stops (resumable, exit 9) and nothing is sent into the pause."""

    def __init__(self, scope: str, seconds: float, max_pause: float) -> None:
        self.scope = scope
        self.seconds = seconds
        self.max_pause = max_pause
        super().__init__(
            f"the server asked to pause {scope} for {_whole(seconds)} s, more than "
            f"retry.max_pause = {_whole(max_pause)} s"
        )


def _whole(seconds: float) -> str:
    # A pause of 31 years reads better as 1000000000 than as 1e+09.
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:g}"
