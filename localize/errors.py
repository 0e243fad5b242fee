"""The one exception tree of localize. The API maps these to HTTP status codes in ``api/errors.py``.

    LocalizeError
    ├── NotFoundError            a user, task, label, job or adapter that does not exist
    │   └── NoAdapterError       a user has no trained adapter for a task
    ├── ConflictError            the request clashes with stored state (duplicate name, job already finished)
    ├── ValidationError          input that breaks a rule (unknown label, empty text, too long, bad file)
    │   └── PayloadTooLargeError an upload or batch over its limit
    ├── PermissionDeniedError    a key that may not touch that resource
    ├── AdapterError             a stored adapter that cannot be served (unreadable, incompatible with the base)
    │   ├── CorruptAdapterError  a stored file is missing or does not match its recorded sha256
    │   └── ServingUnavailableError  the prediction replicas (Ray Serve) cannot be reached or failed
    └── ConfigurationError       the platform is set up in a way that cannot work (e.g. bnb on a CPU)
"""
from __future__ import annotations


class LocalizeError(Exception):
    """Root of every error localize raises on purpose."""


class NotFoundError(LocalizeError):
    pass


class NoAdapterError(NotFoundError):
    pass


class ConflictError(LocalizeError):
    pass


class ValidationError(LocalizeError):
    def __init__(self, message: str, *, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class PayloadTooLargeError(ValidationError):
    pass


class PermissionDeniedError(LocalizeError):
    pass


class AdapterError(LocalizeError):
    pass


class CorruptAdapterError(AdapterError):
    pass


class ConfigurationError(LocalizeError):
    pass


class ServingUnavailableError(AdapterError):
    """The Ray Serve prediction replicas are unreachable, timed out or failed (503, like an unservable adapter)."""
