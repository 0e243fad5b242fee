"""Where the admin key comes from (what `serve` reports) and the length it must have."""
from __future__ import annotations

import os
import stat

import pytest

from localize.admin_key import resolve_admin_key
from localize.errors import ConfigurationError
from localize.settings import Settings


def test_the_key_file_is_generated_owner_only_and_then_reused(tmp_path) -> None:
    first = resolve_admin_key(Settings(home=tmp_path / "home"))
    path = tmp_path / "home" / "admin_key"
    assert first.source == f"the file {path} (generated now)" and len(first.key) >= 16
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = resolve_admin_key(Settings(home=tmp_path / "home"))
    assert again.key == first.key and again.source == f"the file {path}"


def test_the_environment_variable_wins_and_the_file_is_not_named(tmp_path) -> None:
    resolve_admin_key(Settings(home=tmp_path))  # a file exists, holding another key
    chosen = resolve_admin_key(Settings(home=tmp_path, admin_key="an-admin-key-from-the-env"))
    assert chosen.key == "an-admin-key-from-the-env"
    assert chosen.source == "the LOCALIZE_ADMIN_KEY environment variable" and str(tmp_path) not in chosen.source


def test_short_keys_are_refused_naming_where_they_came_from(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="from the LOCALIZE_ADMIN_KEY environment variable has 1 characters"):
        resolve_admin_key(Settings(home=tmp_path, admin_key="x"))
    (tmp_path / "admin_key").write_text("short\n")
    with pytest.raises(ConfigurationError, match=f"from the file {tmp_path / 'admin_key'} has 5 characters"):
        resolve_admin_key(Settings(home=tmp_path))


def test_the_serve_banner_names_where_the_key_in_force_came_from(tmp_path) -> None:
    from localize.server import serve_banner

    resolve_admin_key(Settings(home=tmp_path))  # the key file exists, but the environment's key is the one in force
    banner = serve_banner("127.0.0.1", 8000, resolve_admin_key(Settings(home=tmp_path, admin_key="k" * 20)))
    assert "admin key from the LOCALIZE_ADMIN_KEY environment variable" in banner and "admin_key" not in banner
    from_file = serve_banner("127.0.0.1", 8000, resolve_admin_key(Settings(home=tmp_path)))
    assert f"admin key from the file {tmp_path / 'admin_key'}" in from_file


def test_serve_refuses_a_short_admin_key_before_starting_anything(tmp_path) -> None:
    import subprocess
    import sys

    env = {**os.environ, "LOCALIZE_HOME": str(tmp_path), "LOCALIZE_ADMIN_KEY": "x"}
    done = subprocess.run([sys.executable, "-m", "localize.cli", "serve", "--port", "0", "--no-worker"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "has 1 characters; it needs at least 16" in " ".join((done.stdout + done.stderr).split())
    assert not (tmp_path / "localize.db").exists()  # nothing was created
