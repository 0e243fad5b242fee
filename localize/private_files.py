"""Folders and files that only their owner may read: the SQLite database (labels, key hashes) and the local
adapter store are created 0700 / 0600, whatever the umask. Existing ones are left as they are."""
from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def private_folder(path: str | Path) -> Path:
    """``path`` as a folder; each folder this creates (parents included) is readable by its owner only."""
    wanted = path = Path(path)
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:  # another process made it first
            continue
        os.chmod(folder, PRIVATE_FOLDER)  # mkdir's mode is filtered by the umask
    return wanted


def private_file(path: str | Path) -> Path:
    """Creates ``path`` empty and readable by its owner only, unless it exists."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return path
    os.close(descriptor)
    os.chmod(path, PRIVATE_FILE)
    return path


def open_private(path: str | Path, mode: str = "wb"):  # noqa: ANN201
    """``open(path, mode)`` for writing a new file readable by its owner only."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    return os.fdopen(os.open(path, flags, PRIVATE_FILE), mode)
