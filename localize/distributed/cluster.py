"""Connecting to a Ray cluster, and the settings a Ray process on another node needs to act like this one."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from localize.errors import ConfigurationError
from localize.settings import Settings

logger = logging.getLogger(__name__)

LOCAL = "local"


def import_ray():  # noqa: ANN201
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "Ray is not installed: install the extra with `pip install 'localize[ray]'` (scripts/setup.sh does)"
        ) from None
    return ray


def connect(address: str | None) -> Any:  # noqa: ANN401
    """Joins the Ray cluster at ``address`` (``auto``, ``host:6379``, ``ray://host:10001``), or starts a local
    one for ``local``. Reuses an existing connection of this process."""
    ray = import_ray()
    if not address:
        raise ConfigurationError("no Ray address: pass --ray ADDRESS or set LOCALIZE_RAY_ADDRESS "
                                 "('auto', 'local', 'host:6379' or 'ray://host:10001')")
    if ray.is_initialized():
        return ray
    try:
        if address == LOCAL:
            ray.init(include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address, log_to_driver=True)
    except ConnectionError as error:
        raise ConfigurationError(f"cannot reach the Ray cluster at {address!r}: {error}") from None
    logger.info("connected to Ray at %s: %s", address, ray.cluster_resources())
    return ray


def portable_settings(settings: Settings) -> dict[str, Any]:
    """Settings for a process on another node: paths resolved to absolute ones (a Ray worker does not start in
    this folder) and the database and store spelled out, so every node opens the very same ones."""
    values = settings.model_dump(mode="json", exclude={"admin_key"})  # Ray processes never need the admin key
    values["home"] = str(Path(settings.home).resolve())
    values["database_url"] = settings.resolved_database_url
    values["adapter_store"] = settings.resolved_adapter_store
    return values


def settings_from(values: dict[str, Any]) -> Settings:
    return Settings(**values)
