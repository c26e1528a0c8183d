"""Sending a request until it has a definite answer: limits, 429 pauses and bounded retries.

Every request of a run — list pages, deletes, operation polls — goes through one
:class:`Requester`, so they share one account-wide in-flight cap and one view of every pause.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import structlog

from runner.clock import MONOTONIC, Clock
from runner.errors import (
    PermanentError,
    RateLimited,
    Requeued,
    Throttled,
    TransientError,
    Withheld,
)
from runner.kinds.base import Product
from runner.values import RetryPolicy, Scope, Tally
from runner.wire.adaptive import Verdict
from runner.wire.backoff import Backoff
from runner.wire.client import Reply, TwilioClient, concurrent_requests
from runner.wire.limits import Limits
from runner.wire.pauses import pause_length

log = structlog.get_logger("bulkops.requester")


class Requester:
    """One request at a time, as many at once as the limits allow."""

    def __init__(
        self,
        client: TwilioClient,
        limits: Limits,
        policy: RetryPolicy,
        rng: random.Random,
        *,
        zero_backoff: bool = False,
        clock: Clock = MONOTONIC,
    ) -> None:
        self._client = client
        self._limits = limits
        self._policy = policy
        self._rng = rng
        self._backoff = Backoff(policy.base_delay, policy.max_delay)
        self._zero = zero_backoff
        self._clock = clock
        self.tally = Tally()

    @property
    def limits(self) -> Limits:
        """The limits it sends under (a resume seeds their pace, a run records it)."""
        return self._limits

    def stop_deletes(self) -> None:
        """Send no DELETE from now on (one waiting for a limit raises Stopped instead)."""
        self._client.deletes_stopped = True

    async def send(
        self,
        method: str,
        product: Product,
        path: str,
        *,
        key: Scope | None = None,
        params: Mapping[str, str] | list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        withhold: Callable[[], bool] | None = None,
    ) -> Reply:
        """Send until a 2xx or a permanent error; raise the last fault when retries run out.

        ``withhold`` is asked once per attempt, as late as can be: once the limits have let it
        go and a connection is free for it (each wait can be long), just before it is written.
        True raises :class:`Withheld`, and nothing is sent. (It counts what it holds: asked
        once, never again for the same answer.)"""
        start = self._clock.now()
        faults = 0
        throttles = 0
        while True:
            error: RateLimited | TransientError
            sent_at: float | None = None
            try:
                sent_at = await self._limits.acquire(product, key)
                grant = _Grant(self._limits, product, key, withhold)
                try:
                    self.tally.requests[method] += 1
                    reply = await self._client.request(
                        method, product, path, params=params, headers=headers,
                        on_answer=grant.give_back, still_clear=grant.clear,
                    )
                except Requeued:
                    self.tally.requests[method] -= 1  # nothing was sent
                    if grant.withheld:
                        raise Withheld(f"{method} {path} withheld") from None
                    continue  # a scope was paused meanwhile: it queues at its limits again
                finally:
                    grant.give_back()
                self._limits.accepted(product, concurrent_requests(reply.headers), sent_at)
                return reply
            except RateLimited as exc:
                self.tally.throttled += 1
                wait = pause_length(exc.retry_after, throttles, self._backoff, self._rng)
                throttles += 1
                verdict = self._limits.throttled(
                    product,
                    key,
                    0.0 if self._zero else wait,
                    sent_at=sent_at,
                    concurrent=exc.concurrent if isinstance(exc, Throttled) else None,
                )
                if verdict is not None and verdict is not Verdict.ABSORBED:
                    log.debug(
                        "limit_lowered",
                        product=product.value,
                        cause=verdict.value,
                        rate=_rounded(self._limits.controllers[product].rate()),
                    )
                error = exc
            except PermanentError as exc:
                # A 404 (gone) or other refusal still got through the server's limits.
                self._limits.accepted(product, None)
                if faults:  # not after a 429 alone: Twilio refused those before acting
                    exc.after_fault = True
                raise
            except TransientError as exc:
                faults += 1
                if faults >= self._policy.max_attempts:
                    raise
                error = exc
                delay = 0.0 if self._zero else self._backoff.delay(faults, self._rng)
            elapsed = self._clock.now() - start
            if elapsed >= self._policy.max_elapsed:
                raise error
            self.tally.retries += 1
            if isinstance(error, TransientError):
                log.debug(
                    "retry_scheduled",
                    method=method,
                    status=error.status,
                    code=error.code,
                    retry_num=faults,
                    wait_for=round(delay, 3),
                )
                await self._clock.sleep(delay)


class _Grant:
    """What :meth:`Limits.acquire` granted one attempt (its in-flight slots), given back once:
    by the transport the moment the reply is whole, or by the caller when there was none; and
    the attempt's last check, made once a connection is in hand (:meth:`clear`).

    Given back before the sending task runs again, a slot lets the request waiting for it leave
    in the next turn of the loop, not after every reply of the same burst has been handled (the
    slots were held ~3 ms past their requests in bursts of 13 replies, 6 % of the in-flight cap
    at 50 ms per request). Nothing is sent on a reply not yet acted on: the transport queues the
    sender's task before anything the release wakes, so a 429's pause, a 401's stop or a
    brake is in force before a waiter passes the last check of :meth:`Limits.acquire`.
    """

    __slots__ = ("_held", "_key", "_limits", "_pauses", "_product", "_withhold", "withheld")

    def __init__(
        self,
        limits: Limits,
        product: Product,
        key: Scope | None,
        withhold: Callable[[], bool] | None = None,
    ) -> None:
        self._limits = limits
        self._product = product
        self._key = key
        self._withhold = withhold
        self._pauses = limits.pauses  # as :meth:`Limits.acquire` made its last check
        self._held = True
        self.withheld = False  # what `withhold` answered, when it was asked and said so

    def clear(self) -> bool:
        """Whether the request may leave: none of its scopes paused since it was granted (see
        :meth:`Limits.clear_since`), and no hold covering it (``withheld`` then says so). Asked
        once it has a connection, just before it is written: a wait for one may follow the
        limits' last check."""
        if not self._limits.clear_since(self._product, self._key, self._pauses):
            return False
        if self._withhold is not None and self._withhold():
            self.withheld = True
            return False
        return True

    def give_back(self) -> None:
        """Release the slots, unless already released."""
        if self._held:
            self._held = False
            self._limits.release(self._product)


def _rounded(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 1)
