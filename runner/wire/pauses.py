"""How a 429 pauses: which scopes, for how long, and when a pause is too long to wait out.

Twilio answers every limit it enforces with the same 429 / 20429, so which limit a 429 was
about is a guess, and a guess must not send into a pause the server asked for. A 429 therefore
pauses every scope it may have come from:

* **the account**, when ``Twilio-Concurrent-Requests`` says it was about requests in flight
  (more than any accepted answer ever reported);
* otherwise **the product** of the request (a product's rate is account-wide on its host);
* and, for a scoped delete, **its conversation or Service** too (Twilio's 30 actions/s).

The pause lasts the 429's ``Retry-After`` when it has one, else full-jitter backoff by the
number of 429s this request has had, plus jitter either way (paused workers never wake as
one). A pause beyond ``max_pause`` is not slept through: :class:`runner.errors.PausedTooLong`.

:mod:`runner.wire.limits` applies a :class:`Pause` (nothing is sent into it), and
:mod:`runner.wire.requester` asks :func:`pause_length` how long a 429 asks for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from runner.errors import PausedTooLong
from runner.kinds.base import Product
from runner.values import Scope
from runner.wire.backoff import Backoff, jittered

ACCOUNT = "the account"


@dataclass(frozen=True, slots=True)
class Pause:
    """What one 429 pauses, and until when (clock seconds)."""

    account: bool  # the whole account (a 429 about requests in flight), else the product
    product: Product
    scope: Scope | None  # the request's conversation or Service, paused as well
    wait: float  # the pause the 429 asked for, before jitter
    until: float

    def name(self) -> str:
        """The widest scope paused, as :class:`PausedTooLong` names it."""
        if self.account:
            return ACCOUNT
        return f"product {self.product.value}" if self.scope is None else str(self.scope)


def pause_length(
    retry_after: float | None, throttles: int, backoff: Backoff, rng: random.Random
) -> float:
    """Seconds a 429 asks for: its Retry-After, else backoff by ``throttles`` (the 429s this
    request had before this one)."""
    if retry_after is not None:
        return retry_after
    return backoff.delay(throttles, rng)


def decide(
    product: Product,
    key: Scope | None,
    wait: float,
    *,
    now: float,
    rng: random.Random,
    about_concurrency: bool,
) -> Pause:
    """The pause of a 429 of a request of ``product`` in scope ``key``: ``wait`` seconds plus
    jitter from ``now``, of the account when it was ``about_concurrency``, else of the product,
    and of ``key`` either way."""
    return Pause(about_concurrency, product, key, wait, now + jittered(wait, rng))


def refuse_beyond(pause: Pause, max_pause: float) -> None:
    """Raise :class:`PausedTooLong` when ``pause`` asks for more than ``max_pause`` seconds."""
    if pause.wait > max_pause:
        raise PausedTooLong(pause.name(), pause.wait, max_pause)
