"""Schemathesis hooks for the API's label-file uploads: a JSONL or CSV body is a string in the OpenAPI document,
sent as its UTF-8 bytes. Loaded through ``SCHEMATHESIS_HOOKS`` by ``test_schemathesis.py``."""
from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/jsonl", "application/x-ndjson", "text/csv")
def _text_body(ctx: Any, value: Any) -> bytes:  # noqa: ARG001
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")
