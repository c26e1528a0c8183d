"""The HTTP boundary: the client, pacing and caps, backoff, retries and list pages."""

from __future__ import annotations

from runner.wire.client import Reply, TwilioClient
from runner.wire.limits import Limits
from runner.wire.requester import Requester

__all__ = ["Limits", "Reply", "Requester", "TwilioClient"]
