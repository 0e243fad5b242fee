"""The admin key: where it comes from, and the rule it must meet before a server accepts it.

``localize serve`` takes the key from ``LOCALIZE_ADMIN_KEY`` when it is set, else from ``<home>/admin_key``,
generating that file (mode 0600) the first time. Either way the key must have ``MIN_ADMIN_KEY_CHARS`` characters:
a short key can be guessed, and it unlocks every user's data."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from localize.errors import ConfigurationError
from localize.private_files import PRIVATE_FILE, private_folder
from localize.settings import Settings

MIN_ADMIN_KEY_CHARS = 16
ENV_VARIABLE = "LOCALIZE_ADMIN_KEY"


@dataclass(frozen=True)
class AdminKey:
    key: str
    source: str  # for people: "the LOCALIZE_ADMIN_KEY environment variable" or "the file <path>"


def check_admin_key(key: str | None, *, source: str = ENV_VARIABLE) -> str:
    """``key`` if it is long enough to guard every user's data, else a ConfigurationError naming ``source``."""
    if not key:
        raise ConfigurationError(f"no admin key: set {ENV_VARIABLE} (or run `localize serve`, which generates one "
                                 "into <home>/admin_key); the API refuses to start without one")
    if len(key.strip()) < MIN_ADMIN_KEY_CHARS:
        raise ConfigurationError(
            f"the admin key from {source} has {len(key.strip())} characters; it needs at least "
            f"{MIN_ADMIN_KEY_CHARS} (generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key


def admin_key_file(settings: Settings) -> Path:
    return Path(settings.home) / "admin_key"


def resolve_admin_key(settings: Settings) -> AdminKey:
    """The key a server should use and where it came from: the settings' ``admin_key`` (LOCALIZE_ADMIN_KEY) wins
    over the file, which is generated when neither exists. A key shorter than ``MIN_ADMIN_KEY_CHARS`` is refused."""
    if settings.admin_key:
        source = f"the {ENV_VARIABLE} environment variable"
        return AdminKey(check_admin_key(settings.admin_key, source=source), source)
    path = admin_key_file(settings)
    source = f"the file {path}"
    if path.is_file():
        return AdminKey(check_admin_key(path.read_text().strip(), source=source), source)
    private_folder(path.parent)
    key = "lk_admin_" + secrets.token_urlsafe(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:  # another process generated it first: use theirs
        return AdminKey(check_admin_key(path.read_text().strip(), source=source), source)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    return AdminKey(key, f"{source} (generated now)")
