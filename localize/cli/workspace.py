"""``localize info``: which workspace, database and adapter store a command uses, and the versions running."""
from __future__ import annotations

import os
import platform

from localize.cli.common import JsonOpt, clean_errors, make_runtime, out, print_json, print_table
from localize.cli.root import app


def _version(distribution: str) -> str | None:
    from importlib import metadata  # 20 ms of start-up that only this command needs

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@app.command()
def info(as_json: JsonOpt = False) -> None:
    """The workspace (LOCALIZE_HOME, else the per-user data folder), its database and adapter store, what they
    hold, and the versions of localize and its main libraries. Every command of this shell uses the same one."""
    from sqlalchemy import func, text
    from sqlalchemy.engine import make_url
    from sqlmodel import Session, select

    from localize.db.models import AdapterVersion, Job, Label, Task, User
    from localize.settings import default_home

    with clean_errors():
        runtime = make_runtime()
        settings = runtime.settings
        with Session(runtime.database) as session:
            counts = {name: session.exec(select(func.count()).select_from(table)).one()
                      for name, table in (("tasks", Task), ("users", User), ("labels", Label),
                                          ("adapter_versions", AdapterVersion), ("jobs", Job))}
            revision = session.exec(text("SELECT version_num FROM alembic_version")).scalar()
    details = {
        "workspace": str(settings.home.resolve()),
        "workspace_from": "LOCALIZE_HOME" if os.environ.get("LOCALIZE_HOME") else f"default ({default_home()})",
        "database": make_url(settings.resolved_database_url).render_as_string(hide_password=True),
        "schema_revision": revision,
        "adapter_store": settings.resolved_adapter_store,
        "default_recipe": settings.default_method,
        **counts,
        "versions": {"localize": _version("localize"), "python": platform.python_version(),
                     **{name: _version(name) for name in ("torch", "transformers", "sqlalchemy", "fastapi")}},
    }
    if as_json:
        print_json(details)
        return
    rows = [[key.replace("_", " "), value] for key, value in details.items() if key != "versions"]
    rows += [[f"{name} version", value or "not installed"] for name, value in details["versions"].items()]
    print_table(["", ""], rows, show_header=False)
    out().print("LOCALIZE_HOME (or --home) chooses another workspace.")
