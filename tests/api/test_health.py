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
    # Stamp rather than downgrade: dropping tables under the app's background threads (worker, webhook
    # delivery) can deadlock in PostgreSQL, and readiness reads only the recorded revision.
    command.stamp(alembic_config(settings.resolved_database_url), "base", purge=True)
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
    monkeypatch.setenv("LOCALIZE_ADMIN_KEY", "admin-key-from-env-0123")
    get_settings.cache_clear()
    try:
        app = create_app()
    finally:
        get_settings.cache_clear()
    assert app.state.runtime.settings.admin_key == "admin-key-from-env-0123"
    assert app.title == "localize" and app.version


def test_app_refuses_an_admin_key_shorter_than_16_characters(tmp_path):
    with pytest.raises(ConfigurationError, match="has 15 characters; it needs at least 16"):
        create_app(Settings(home=tmp_path, admin_key="x" * 15))
    assert create_app(Settings(home=tmp_path, admin_key="x" * 16)).state.runtime is not None
