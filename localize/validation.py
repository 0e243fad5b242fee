"""The one set of rules for input that reaches the database: text, integers and JSON documents.

Every door (API routes, label uploads, the CLI) and the services behind them call these, so a value that one
door accepts can be stored, read back and answered by every other:

- text must be Unicode that encodes as UTF-8 (no lone surrogates such as ``\\ud800``, which JSON can spell but no
  database or response can hold) and hold no NUL character (PostgreSQL refuses it in text);
- integers that name or count rows fit a signed 64-bit column (SQLite and PostgreSQL refuse 2^63 and more);
- a JSON document is UTF-8, strictly JSON (no NaN or Infinity) and nested at most ``MAX_JSON_DEPTH`` deep (deeper
  documents would exhaust the parser's recursion long before any legitimate payload needs it).
"""
from __future__ import annotations

import json
from typing import Any

from localize.errors import ValidationError

MAX_DB_INT = 2**63 - 1  # the largest value of a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT)
# The largest id or version number every supported database's INTEGER column holds (PostgreSQL's is 32-bit):
# a larger one names nothing that can exist, and a query with it would fail on PostgreSQL.
MAX_ID = 2**31 - 1
MAX_JSON_DEPTH = 32  # the deepest any request of this API needs is 4 (labels -> row -> field)
# The text rule as JSON-schema patterns (ECMA-262, Python and Rust regexes read them alike): no NUL. A lone
# surrogate cannot be written in UTF-8 at all (only as a JSON escape), so no pattern needs to, or can, name it.
TEXT_PATTERN = r"^[^\u0000]*$"
# Text that is not blank: at least one character that is not white space.
NONBLANK_TEXT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"
# Text that neither starts nor ends with white space (what a stripped value looks like).
STRIPPED_TEXT_PATTERN = r"^[^\s\u0000](?:[^\u0000]*[^\s\u0000])?$"


class MalformedJsonError(ValidationError):
    """A body that is not a JSON document this API reads: not UTF-8, not JSON, or nested too deep."""


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or ``None``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(value[error.start])
        return (f"holds a lone surrogate U+{code:04X} at character {error.start}: it is not Unicode text "
                "(a JSON \\uD800-\\uDFFF escape must be one half of a pair)")
    at = value.find("\x00")
    if at >= 0:
        return f"holds a NUL character (\\u0000) at character {at}, which cannot be stored"
    return None


def check_text(value: str, *, field: str) -> str:
    """``value`` if it can be stored as text, else a ValidationError naming ``field``."""
    problem = text_problem(value)
    if problem is not None:
        raise ValidationError(f"{field} {problem}", errors=[{"field": field, "message": f"{field} {problem}"}])
    return value


def check_db_int(value: int, *, field: str, minimum: int = 0, maximum: int = MAX_DB_INT) -> int:
    """``value`` if it lies in ``minimum..maximum`` (a database-safe integer by default), else a ValidationError."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        message = f"{field}={value!r} must be an integer in {minimum}..{maximum}"
        raise ValidationError(message, errors=[{"field": field, "message": message}])
    return value


# -- JSON ---------------------------------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use null, or a number)")


def _position(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _malformed(what: str, message: str, *, position: int | None = None, text: str | None = None) -> MalformedJsonError:
    error: dict[str, Any] = {"loc": ["body"], "message": message}
    detail = f"{what} is not valid JSON: {message}"
    if position is not None:
        line, column = _position(text or "", position)
        error.update(line=line, column=column, position=position)
        detail += f" at line {line} column {column} (char {position})"
    return MalformedJsonError(detail, errors=[error])


def json_depth(value: Any, *, limit: int) -> int | None:
    """The depth at which a parsed document first nests deeper than ``limit`` (arrays and objects), or None.
    Iterative, so it never recurses however deep the document."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return depth
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return None


def parse_json(data: bytes | str, *, what: str = "request body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The one JSON reader of every request body and JSONL line: strict UTF-8, strict JSON, bounded depth.

    A problem is a :class:`MalformedJsonError` whose message names ``what`` and where it went wrong."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedJsonError(
                f"{what} is not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} cannot be decoded "
                f"({error.reason}); JSON must be sent as UTF-8",
                errors=[{"loc": ["body"], "position": error.start, "message": f"invalid UTF-8 byte "
                         f"0x{data[error.start]:02x} at offset {error.start}"}],
            ) from None
    else:
        text = data
    too_deep = f"{what} is nested more than {max_depth} levels deep (arrays and objects); the limit is {max_depth}"
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise _malformed(what, error.msg, position=error.pos, text=text) from None
    except RecursionError:  # nested deeper than the interpreter's recursion limit
        raise MalformedJsonError(too_deep, errors=[{"loc": ["body"], "message": too_deep}]) from None
    except ValueError as error:  # NaN / Infinity
        raise _malformed(what, str(error)) from None
    depth = json_depth(value, limit=max_depth)
    if depth is not None:
        raise MalformedJsonError(too_deep, errors=[{"loc": ["body"], "depth": depth, "message": too_deep}])
    return value
