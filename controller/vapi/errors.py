"""The client's own error hierarchy, over httpx's. Messages carry method, path, status and
Vapi's own message: never headers, so never the key."""

from __future__ import annotations


class VapiError(Exception):
    def __init__(self, message: str, *, method: str, path: str, status: int | None = None):
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status


class VapiClientError(VapiError):
    """4xx: the request was refused; repeating it unchanged will not help."""


class BadRequestError(VapiClientError):
    def __init__(self, messages: list[str], *, method: str, path: str) -> None:
        super().__init__(
            f"{method} {path}: 400 {'; '.join(messages)}", method=method, path=path, status=400
        )
        self.messages = messages


class UnauthorizedError(VapiClientError):
    """401/403: the master key was rejected."""


class NotFoundError(VapiClientError):
    pass


class ConflictError(VapiClientError):
    """409, e.g. ``assistant_pinned`` on delete."""


class RateLimitedError(VapiClientError):
    def __init__(self, message: str, *, method: str, path: str, retry_after: float | None):
        super().__init__(message, method=method, path=path, status=429)
        self.retry_after = retry_after


class VapiServerError(VapiError):
    """5xx."""


class VapiTimeoutError(VapiError):
    pass


class VapiConnectionError(VapiError):
    """The connection failed or dropped."""


class OutcomeUnknownError(VapiError):
    """A create was sent but its outcome is unknown (timeout, 5xx, dropped response).

    Never retried: the caller re-observes Vapi and adopts what the POST may have created.
    """


class MalformedResponseError(VapiError):
    """Vapi answered 2xx with a body that is not what the API promises."""


class IncompleteListingError(VapiError):
    """A listing could not be proven complete; absence must not be concluded from it."""


class WriteAbandonedError(Exception):
    """A write was not sent: the caller's claim may have expired (its lease ran out on the
    local monotonic clock, e.g. after the process was paused). Nothing reached Vapi."""
