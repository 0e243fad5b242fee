"""The web app served at ``/``: server-rendered pages (Jinja2) with a little htmx, one more door onto the services.

htmx (vendored in ``static/``, see its README) swaps HTML fragments for the label page's answers, the live job
progress and "try it": no client-side application, no build step, no CDN; every asset ships in the package.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from localize.api.web import admin, pages
from localize.api.web.session import SessionCodec

STATIC = Path(__file__).parent / "static"


def install_web(app: FastAPI, admin_key: str) -> None:
    """Adds the pages and their static assets to ``app``."""
    app.state.web_sessions = SessionCodec(admin_key)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(admin.router)
