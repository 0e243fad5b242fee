"""Parse per-user label files (JSONL or CSV) into rows, without touching the database.

One row per ``(user, text)``::

    {"user": "john", "text": "gold soars 3%", "label": "positive", "item": "t-17", "split": "train"}

    user,text,label,item,split
    john,gold soars 3%,positive,t-17,train

``user``, ``text`` and ``label`` are required; ``item`` and ``split`` (``train`` or ``test``) are optional; any other
field is ignored. A bad row becomes a :class:`RowError` and the good rows are kept, so one typo does not sink an
upload. Only problems with the file as a whole (not UTF-8, no CSV header, too many rows) raise.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localize.errors import PayloadTooLargeError, ValidationError
from localize.names import NAME_RULE, is_valid_name
from localize.validation import MalformedJsonError, parse_json, text_problem

FORMATS = ("jsonl", "csv")
REQUIRED_FIELDS = ("user", "text", "label")
OPTIONAL_FIELDS = ("item", "split")
SPLITS = ("train", "test")

_BOM = b"\xef\xbb\xbf"
_FORMAT_ALIASES = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "jsonlines": "jsonl", "csv": "csv"}
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".jsonlines": "jsonl", ".csv": "csv"}
_CONTENT_TYPES = {
    "application/jsonl": "jsonl",
    "application/x-jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/ndjson": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/json": "jsonl",
    "text/jsonl": "jsonl",
    "text/csv": "csv",
    "text/x-csv": "csv",
    "application/csv": "csv",
    "application/x-csv": "csv",
    # Browsers on Windows label .csv uploads with Excel's type.
    "application/vnd.ms-excel": "csv",
}


@dataclass(frozen=True)
class LabelRow:
    line: int
    user: str
    text: str
    label: str
    item: str | None = None
    split: str | None = None


@dataclass
class RowError:
    line: int  # 1-based; in CSV the header is line 1 and a multi-line record reports the line it starts on
    message: str


@dataclass
class ParseResult:
    rows: list[LabelRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def _normalize_format(fmt: str) -> str:
    normalized = _FORMAT_ALIASES.get(fmt.strip().lower()) if isinstance(fmt, str) else None
    if normalized is None:
        raise ValidationError(f"label file format {fmt!r} is not one of {list(FORMATS)}")
    return normalized


def detect_format(filename: str | None, content_type: str | None, head: bytes) -> str:
    """Return ``'jsonl'`` or ``'csv'`` from the file name, else the content type, else the first bytes."""
    # The extension is what the user chose; a browser's content type is often a guess.
    if filename:
        fmt = _EXTENSIONS.get(Path(filename).suffix.lower())
        if fmt:
            return fmt
    if content_type:
        fmt = _CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())
        if fmt:
            return fmt
    sample = head.removeprefix(_BOM).decode("utf-8", errors="replace").lstrip()
    first_line = sample.split("\n", 1)[0]
    if sample.startswith("{"):
        return "jsonl"
    if "," in first_line:
        return "csv"
    raise ValidationError(
        f"cannot tell whether label file {filename!r} (content type {content_type!r}) is JSONL or CSV: "
        "name it .jsonl or .csv, or send content type application/jsonl or text/csv"
    )


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    offset = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = offset + exc.start
        line = data.count(b"\n", 0, at) + 1
        raise ValidationError(
            f"label file is not UTF-8: byte 0x{data[at]:02x} at offset {at} (line {line}) cannot be decoded "
            f"({exc.reason}); save the file as UTF-8"
        ) from None


def _short(value: str, limit: int = 60) -> str:
    return repr(value) if len(value) <= limit else repr(value[:limit] + "...")


def _validate(
    line: int,
    record: dict[str, Any],
    *,
    max_text_chars: int,
    allowed_labels: set[str] | None,
    default_user: str | None = None,
) -> LabelRow | RowError:
    """Check one record; every problem in it is reported together, so one fix pass is enough."""
    if default_user is not None and record.get("user") is None:
        record = {**record, "user": default_user}
    problems: list[str] = []
    values: dict[str, str | None] = {}
    for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
        value = record.get(name)
        if value is None or (name in OPTIONAL_FIELDS and isinstance(value, str) and not value.strip()):
            # An empty optional cell is how CSV says "absent".
            if name in REQUIRED_FIELDS:
                problems.append(f"missing field {name!r}")
            values[name] = None
            continue
        if not isinstance(value, str):
            problems.append(f"field {name!r} must be a string, got {type(value).__name__} {value!r}")
            values[name] = None
            continue
        unstorable = text_problem(value)
        if unstorable is not None:
            problems.append(f"field {name!r} {unstorable}")
            values[name] = None
            continue
        if name == "text":
            # Text is kept as given: leading spaces or newlines may matter to the user's labels.
            if not value:
                problems.append("field 'text' is empty")
            elif not value.strip():
                problems.append("field 'text' is only whitespace")
            values[name] = value
            continue
        value = value.strip()
        if not value:
            problems.append(f"field {name!r} is empty")
        values[name] = value or None

    user, text, label, split = values["user"], values["text"], values["label"], values["split"]
    if user is not None and not is_valid_name(user):
        problems.append(f"user {_short(user)} must be {NAME_RULE}")
    if text is not None and len(text) > max_text_chars:
        problems.append(f"text is {len(text)} characters, over the limit of {max_text_chars}")
    if label is not None and allowed_labels is not None and label not in allowed_labels:
        problems.append(f"label {_short(label)} is not one of the allowed labels {sorted(allowed_labels)}")
    if split is not None and split not in SPLITS:
        problems.append(f"split {_short(split)} is not one of {list(SPLITS)}")
    if problems:
        return RowError(line, "; ".join(problems))
    assert user is not None and text is not None and label is not None
    return LabelRow(line=line, user=user, text=text, label=label, item=values["item"], split=split)


def _jsonl_records(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    records: list[tuple[int, dict[str, Any] | str]] = []
    # Split on "\n" only: str.splitlines would also break on U+2028 and friends, which JSON strings may hold raw.
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.rstrip("\r")
        if not raw.strip():
            continue
        try:
            value = parse_json(raw, what="line")
        except MalformedJsonError as exc:
            problem = exc.errors[0]
            where = f" at column {problem['column']}" if "column" in problem else ""
            records.append((number, f"invalid JSON: {problem['message']}{where}"))
            continue
        if not isinstance(value, dict):
            records.append((number, f"expected a JSON object, got {type(value).__name__}"))
            continue
        records.append((number, value))
    return records


def _csv_records(text: str, required: tuple[str, ...] = REQUIRED_FIELDS) -> list[tuple[int, dict[str, Any] | str]]:
    # strict=True turns a broken quote into an error for that record; the reader then carries on at the next line.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ValidationError(f"CSV header on line 1 cannot be read: {exc}") from None
    if not header or not any(cell.strip() for cell in header):
        raise ValidationError(f"CSV label file needs a header on line 1 with columns {', '.join(required)}")
    columns = [cell.strip().lower() for cell in header]
    missing = [name for name in required if name not in columns]
    if missing:
        raise ValidationError(f"CSV header is missing column(s) {missing}; found columns {columns}")
    duplicated = sorted({name for name in columns if name and columns.count(name) > 1})
    if duplicated:
        raise ValidationError(f"CSV header repeats column(s) {duplicated}")

    records: list[tuple[int, dict[str, Any] | str]] = []
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            records.append((start, f"malformed CSV record: {exc}"))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != len(columns):
            # Usually an unquoted comma in the text; guessing which cell it belongs to would mislabel silently.
            records.append((line, f"record has {len(cells)} fields but the header has {len(columns)}"))
            continue
        records.append((line, dict(zip(columns, cells))))
    return records


def read_records(data: bytes | str, fmt: str, *, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any] | str]]:
    """The records of a JSONL or CSV file with their line numbers, unchecked; a record that cannot be read is
    its error message. Label files and text-pool files (``required=("text",)``) share this reading."""
    text = _decode(data)
    return _jsonl_records(text) if _normalize_format(fmt) == "jsonl" else _csv_records(text, required)


def parse_labels(
    data: bytes | str,
    fmt: str,
    *,
    max_text_chars: int = 5000,
    allowed_labels: set[str] | None = None,
    max_rows: int | None = None,
    default_user: str | None = None,
) -> ParseResult:
    """Parse a JSONL or CSV label file; bad rows become errors and good rows are kept.

    A later row for the same ``(user, text)`` replaces an earlier one, so re-labelling is a matter of appending.
    With ``default_user`` (one user's own upload) the ``user`` field may be left out.
    Raises ``ValidationError`` for a file that cannot be read at all and ``PayloadTooLargeError`` past ``max_rows``.
    """
    fmt = _normalize_format(fmt)
    text = _decode(data)
    required = tuple(f for f in REQUIRED_FIELDS if not (default_user is not None and f == "user"))
    records = _jsonl_records(text) if fmt == "jsonl" else _csv_records(text, required)
    if max_rows is not None and len(records) > max_rows:
        raise PayloadTooLargeError(f"label file has {len(records)} rows, over the limit of {max_rows}")

    kept: dict[tuple[str, str], LabelRow] = {}
    errors: list[RowError] = []
    for line, record in records:
        outcome = (
            RowError(line, record)
            if isinstance(record, str)
            else _validate(line, record, max_text_chars=max_text_chars, allowed_labels=allowed_labels,
                           default_user=default_user)
        )
        if isinstance(outcome, RowError):
            errors.append(outcome)
            continue
        key = (outcome.user, outcome.text)
        kept.pop(key, None)  # re-insert so the rows stay in file order of the kept version
        kept[key] = outcome
    return ParseResult(rows=list(kept.values()), errors=errors)


def read_label_file(path: str | Path, *, fmt: str | None = None, **kw: Any) -> ParseResult:
    """Parse a label file on disk; the format comes from ``fmt``, else the extension, else the first bytes."""
    path = Path(path)
    data = path.read_bytes()
    return parse_labels(data, fmt or detect_format(path.name, None, data[:4096]), **kw)


def infer_label_set(rows: list[LabelRow]) -> list[str]:
    """The distinct labels used in ``rows``, sorted."""
    return sorted({row.label for row in rows})
