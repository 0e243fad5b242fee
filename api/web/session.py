"""Web sessions: a signed cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and a CSRF token per session.

The cookie holds who signed in (a user id, or the admin), a fingerprint of the key they signed in with (a new key
ends old sessions), the session's CSRF token and the label page's undo stack. It is signed with HMAC-SHA256
under a secret derived from the admin key, so no server-side store is needed and changing the admin key signs
everyone out. Every form carries the CSRF token; htmx sends it as the ``X-CSRF-Token`` header.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response

COOKIE = "localize_session"
MAX_AGE_SECONDS = 12 * 3600
UNDO_DEPTH = 20
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def _secret(admin_key: str) -> bytes:
    return hashlib.sha256(b"localize web session\x00" + admin_key.encode("utf-8")).digest()


def key_fingerprint(secret: bytes, key_hash: str | None) -> str:
    """A short tag of the stored key hash: a rotated key no longer matches the session that used the old one."""
    return hmac.new(secret, (key_hash or "").encode(), hashlib.sha256).hexdigest()[:16]


@dataclass
class WebSession:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user_id: int | None = None
    is_admin: bool = False
    fingerprint: str = ""
    issued_at: float = field(default_factory=time.time)
    undo: list[list[Any]] = field(default_factory=list)  # [action, task id, text id], newest last

    @property
    def signed_in(self) -> bool:
        return self.is_admin or self.user_id is not None

    def push_undo(self, action: str, task_id: int, text_id: int) -> None:
        self.undo = (self.undo + [[action, task_id, text_id]])[-UNDO_DEPTH:]

    def pop_undo(self, task_id: int) -> tuple[str, int] | None:
        """The newest undoable action in ``task``, removed from the stack."""
        for index in range(len(self.undo) - 1, -1, -1):
            action, action_task, text_id = self.undo[index]
            if action_task == task_id:
                del self.undo[index]
                return action, text_id
        return None

    def can_undo(self, task_id: int) -> bool:
        return any(entry[1] == task_id for entry in self.undo)


class SessionCodec:
    def __init__(self, admin_key: str) -> None:
        self.secret = _secret(admin_key)

    def encode(self, session: WebSession) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(
            {"c": session.csrf, "u": session.user_id, "a": session.is_admin, "f": session.fingerprint,
             "t": session.issued_at, "d": session.undo}, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}"

    def decode(self, value: str | None) -> WebSession | None:
        if not value or "." not in value:
            return None
        payload, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = WebSession(csrf=str(data["c"]), user_id=data["u"], is_admin=bool(data["a"]),
                                 fingerprint=str(data["f"]), issued_at=float(data["t"]), undo=list(data["d"]))
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - session.issued_at > MAX_AGE_SECONDS:
            return None
        return session

    def _sign(self, payload: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()).decode().rstrip("=")


def save(request: Request, response: Response, session: WebSession) -> None:
    codec: SessionCodec = request.app.state.web_sessions
    response.set_cookie(COOKIE, codec.encode(session), max_age=MAX_AGE_SECONDS, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")


def clear(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")


def load(request: Request) -> WebSession:
    """The request's session, or a fresh anonymous one (with a CSRF token for the sign-in form)."""
    codec: SessionCodec = request.app.state.web_sessions
    return codec.decode(request.cookies.get(COOKIE)) or WebSession()


def csrf_ok(session: WebSession, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf.encode(), str(submitted).encode())
