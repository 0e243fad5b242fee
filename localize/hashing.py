"""The text hash that the database's text pool, the activation cache and saved encodings all key on; kept free of
torch so database-only code can import it."""
from __future__ import annotations

import hashlib


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
