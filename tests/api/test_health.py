"""Liveness and readiness need no key; readiness checks the database schema."""
from __future__ import annotations

import pytest
from alembic import command

from localize.api.app import create_app
from localize.db.session import alembic_config
from localize.errors import ConfigurationError
from localize.settings import Settings, get_settings


def test_health_needs_no_key(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_schema_head_and_lazy_base_model(client):
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["schema_revision"] == client.app.state.schema_head
    # The base model loads lazily, on the first prediction or training in this process.
    assert body["base_model_loaded"] is client.app.state.runtime.base_loaded


def test_ready_is_503_when_schema_is_behind(client, settings):
    command.downgrade(alembic_config(settings.resolved_database_url), "base")
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "revision None" in response.json()["detail"]
    assert client.app.state.schema_head in response.json()["detail"]


def test_app_refuses_to_start_without_admin_key(tmp_path):
    with pytest.raises(ConfigurationError, match="no admin key: set LOCALIZE_ADMIN_KEY"):
        create_app(Settings(home=tmp_path, admin_key=None))


def test_app_reads_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALIZE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCALIZE_ADMIN_KEY", "from-env")
    get_settings.cache_clear()
    try:
        app = create_app()
    finally:
        get_settings.cache_clear()
    assert app.state.runtime.settings.admin_key == "from-env"
    assert app.title == "localize" and app.version
