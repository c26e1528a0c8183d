"""How a remote failure reads to a person: one line naming the URL, what happened and the fix.

Used where a failure ends a command or a source (``plan`` meeting a 401, ``run`` unable to list
a Service), never for the per-target errors of the report, which keep Twilio's own words.
"""

from __future__ import annotations

import re

from runner.errors import AuthError, BadListing, OperationFailed, RemoteError

_SERVICE = re.compile(r"/v1/Services/[^/]+/Conversations$")
_CHILDREN = re.compile(r"/Conversations/[^/]+/(Messages|Participants)$")


def remote_problem(failure: RemoteError | OperationFailed) -> str:
    """``failure`` in one line: '<what> on <url>: <the fix>'."""
    if isinstance(failure, OperationFailed):
        return f"operation {failure.operation_id} ended {failure.status}: {failure.detail}"
    where = failure.url or "the server"
    path = failure.url.split("?")[0] if failure.url else ""
    if isinstance(failure, AuthError):
        return (
            f"credentials refused (HTTP {failure.status}) by {where}: check TWILIO_ACCOUNT_SID "
            "and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY / TWILIO_API_SECRET) and the account's "
            "access to this product"
        )
    if isinstance(failure, BadListing):
        return (
            f"{failure.message}: the reply is not what Twilio sends, so what it names was left "
            "out, not deleted; if it persists, look for a proxy or a fault between bulkops and "
            "the API, then `bulkops resume`"
        )
    if failure.status == 0 and "timed out" in failure.message:
        return (
            f"no answer from {where} within the request timeout (after retries): the server "
            "or the network is slow or down; try again later, or check the base URL"
        )
    if failure.status == 0:
        return (
            f"cannot reach {where} ({_reason(failure.message)}, after retries): check the base URL "
            "(base_urls in the config, BULKOPS_CONVERSATIONS_URL / BULKOPS_MEMORY_URL) and the "
            "network; Twilio may also be down"
        )
    if failure.status == 404:
        if _SERVICE.search(path):
            fix = "no such Service? check `service:` in the job spec"
        elif _CHILDREN.search(path):
            fix = "the conversation is gone or belongs to another Service"
        else:
            fix = "not found: check the base URL and that the account has this product"
        return f"HTTP 404 on {where}: {fix}"
    if failure.status >= 500 or failure.status in (409, 429):
        return (
            f"HTTP {failure.status} from {where} after retries: the server is busy or failing; "
            "try again later"
        )
    return f"HTTP {failure.status} on {where}: {failure.message}"


def _reason(message: str) -> str:
    """'connection refused' rather than the client's class name, when the client said so."""
    if "(" in message and message.endswith(")"):
        return message[message.rindex("(") + 1 : -1]
    return message
