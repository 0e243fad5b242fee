"""The client's one exception tree. An answer the server refused carries its RFC 9457 problem details.

    LocalizeClientError
    ├── APIConnectionError           the server could not be reached (after the retries)
    │   └── APITimeoutError          no answer within the timeout
    ├── APIStatusError               an error answer: status, type, title, detail, errors, instance
    │   ├── BadRequestError          400 malformed body, 415 wrong content type
    │   ├── AuthenticationError      401 no key, or an unknown one
    │   ├── PermissionDeniedError    403 a user key on an admin route
    │   ├── NotFoundError            404
    │   │   └── NoAdapterError       404 the user has no trained adapter yet
    │   ├── ConflictError            409
    │   ├── PayloadTooLargeError     413
    │   ├── ValidationError          422 (``errors``: each bad row or field)
    │   ├── RateLimitError           429 (retried first)
    │   ├── ServiceUnavailableError  503 (retried first)
    │   └── InternalServerError      500 and any other 5xx
    ├── JobFailedError               a job that was waited for failed or was cancelled (``job``)
    ├── WaitTimeoutError             a wait ran past its timeout (``job``: the last state seen)
    └── LabelFileError               a label file that cannot be read at all (also a ValueError)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from localize.api.schemas import JobPublic


class LocalizeClientError(Exception):
    """Root of every error the client raises."""


class APIConnectionError(LocalizeClientError):
    pass


class APITimeoutError(APIConnectionError):
    pass


class APIStatusError(LocalizeClientError):
    """An error answer, with the server's problem details."""

    def __init__(self, *, status: int, title: str, detail: str, type: str | None = None,  # noqa: A002
                 instance: str | None = None, errors: list[dict[str, Any]] | None = None,
                 response: httpx.Response | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.type, self.instance, self.errors = type, instance, list(errors or [])
        self.response = response


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class NoAdapterError(NotFoundError):
    pass


class ConflictError(APIStatusError):
    pass


class PayloadTooLargeError(APIStatusError):
    pass


class ValidationError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class ServiceUnavailableError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


class JobFailedError(LocalizeClientError):
    def __init__(self, job: JobPublic) -> None:
        super().__init__(f"job {job.id} {job.state}" + (f": {job.error}" if job.error else ""))
        self.job = job


class WaitTimeoutError(LocalizeClientError):
    def __init__(self, job: JobPublic, timeout: float) -> None:
        super().__init__(f"job {job.id} is still {job.state} (progress {job.progress:.0%}) after {timeout:g} s")
        self.job = job


class LabelFileError(LocalizeClientError, ValueError):
    pass


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: PayloadTooLargeError, 415: BadRequestError, 422: ValidationError,
    429: RateLimitError, 503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed error for an error answer, from its problem details (or its plain body, if it has none)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text.strip()[:500] or response.reason_phrase}
    problem_type = body.get("type")
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    if status == 404 and isinstance(problem_type, str) and problem_type.endswith("/no-adapter"):
        cls = NoAdapterError
    errors = body.get("errors")
    return cls(status=status, title=str(body.get("title") or response.reason_phrase), detail=str(body.get("detail", "")),
               type=problem_type, instance=body.get("instance"), errors=errors if isinstance(errors, list) else None,
               response=response)
