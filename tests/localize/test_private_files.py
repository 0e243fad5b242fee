"""The SQLite database and the local adapter store are created readable by their owner only, whatever the umask."""
from __future__ import annotations

import os
import stat


from localize.runtime import Runtime
from localize.settings import Settings


def mode(path) -> int:  # noqa: ANN001
    return stat.S_IMODE(os.stat(path).st_mode)


def test_database_and_adapter_store_are_owner_only(tmp_path, monkeypatch) -> None:
    previous = os.umask(0o022)  # the common default, under which plain creation gives 0644 / 0755
    try:
        home = tmp_path / "new" / "home"
        runtime = Runtime(Settings(home=home, admin_key="k" * 16))
        runtime.upgrade_database()
        with runtime.database.begin() as connection:  # a write, so SQLite creates its -wal and -shm files
            connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
        assert mode(home) == 0o700 and mode(tmp_path / "new") == 0o700
        database = home / "localize.db"
        for path in (database, home / "localize.db-wal", home / "localize.db-shm"):
            assert mode(path) == 0o600, path

        store = runtime.store
        assert mode(home / "adapters") == 0o700
        files = {"adapter_model.safetensors": b"\x00" * 8, "adapter_config.json": b"{}"}
        store._publish("task-1/user-1", 1, files)
        folder = home / "adapters" / "task-1" / "user-1" / "v1"
        assert mode(home / "adapters" / "task-1") == 0o700 and mode(folder) == 0o700
        assert {mode(folder / name) for name in files} == {0o600}
        runtime.database.dispose()
    finally:
        os.umask(previous)
