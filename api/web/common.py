"""What every page shares: templates, who is signed in, CSRF checks, and errors rendered as HTML pages.

Pages are one more door onto the services, with the API's rule: a user sees only their own pages (another
user's page is a 404, exactly as if that user did not exist); the admin sees every page.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from localize.api.deps import SessionDep
from localize.api.errors import DOMAIN_ERRORS
from localize.api.web import session as web_session
from localize.api.web.session import WebSession
from localize.db.models import User
from localize.errors import LocalizeError, NotFoundError
from localize.services.users import get_user

logger = logging.getLogger(__name__)

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["percent"] = lambda value: "–" if value is None else f"{100 * value:.1f}%"
templates.env.globals["figure"] = lambda value: "–" if value is None else f"{value:.3f}"


class SignInRequired(Exception):
    """A page that needs a signed-in user (or the admin) was asked for without one."""


class PageRoute(APIRoute):
    """Answers errors with an HTML page (or an inline message for an htmx request) instead of problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)
            except LocalizeError as error:
                status = next((DOMAIN_ERRORS[kind][0] for kind in type(error).__mro__ if kind in DOMAIN_ERRORS), 500)
                return error_page(request, status, str(error))
            except RequestValidationError as error:
                shown = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
                return error_page(request, 422, f"invalid input: {shown}")
            except HTTPException as error:
                return error_page(request, error.status_code, str(error.detail))

        return route


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    template = "_error.html" if request.headers.get("hx-request") else "error.html"
    session = web_session.load(request)
    response = templates.TemplateResponse(request, template, {"status": status, "message": message,
                                                              "web": session, "me": None}, status_code=status)
    if request.headers.get("hx-request"):
        response.headers["HX-Retarget"] = "#messages"  # errors of a fragment show in the page's message area
        response.headers["HX-Reswap"] = "innerHTML"
    return response


def current_session(request: Request, session: SessionDep) -> WebSession:
    """The request's session; a signed-in one whose user is gone or whose key was replaced becomes anonymous."""
    web = web_session.load(request)
    if web.user_id is not None:
        user = session.get(User, web.user_id)
        codec = request.app.state.web_sessions
        if user is None or web.fingerprint != web_session.key_fingerprint(codec.secret, user.api_key_hash):
            return WebSession(csrf=web.csrf)
    return web


WebSessionDep = Annotated[WebSession, Depends(current_session)]


def signed_in(web: WebSessionDep) -> WebSession:
    if not web.signed_in:
        raise SignInRequired()
    return web


SignedInDep = Annotated[WebSession, Depends(signed_in)]


def admin_page(web: SignedInDep) -> WebSession:
    if not web.is_admin:
        # To a user, admin pages do not exist (the API says 403; a page that only the admin links to is a 404).
        raise NotFoundError("this page does not exist")
    return web


AdminPageDep = Annotated[WebSession, Depends(admin_page)]


def page_owner(user: str, web: SignedInDep, session: SessionDep) -> User:
    """The path's user, if the session may see their pages: the user themself, or the admin."""
    if web.is_admin:
        return get_user(session=session, name=user)
    me = session.get(User, web.user_id)
    if me is None or me.name != user:
        raise NotFoundError(f"user {user!r} does not exist")
    return me


OwnerPageDep = Annotated[User, Depends(page_owner)]


def check_csrf(web: WebSessionDep, csrf_token: Annotated[str, Form()] = "") -> WebSession:
    """Every form posts the session's CSRF token; a missing or wrong one is refused before anything happens."""
    if not web_session.csrf_ok(web, csrf_token):
        raise HTTPException(403, detail="the form's CSRF token is missing or stale; reload the page and try again")
    return web


CsrfDep = Annotated[WebSession, Depends(check_csrf)]


def render(request: Request, template: str, context: dict[str, Any], *, web: WebSession,
           me: User | None = None, status_code: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, template, {**context, "web": web, "me": me},
                                          status_code=status_code)
    return response


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


