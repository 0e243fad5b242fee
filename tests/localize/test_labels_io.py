from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from localize.errors import PayloadTooLargeError, ValidationError
from localize.labels_io import (
    LabelRow,
    RowError,
    detect_format,
    infer_label_set,
    parse_labels,
    read_label_file,
)


def jsonl(*records: object) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


GOOD = {"user": "john", "text": "gold soars", "label": "positive"}


# --- JSONL row errors --------------------------------------------------------------------------------------------

ROW_ERROR_CASES = [
    ("invalid json", '{"user": "john", "text": "x" "label": "a"}', r"invalid JSON: Expecting ',' delimiter"),
    ("not an object", '["john", "x", "a"]', r"expected a JSON object, got list"),
    ("string not an object", '"john"', r"expected a JSON object, got str"),
    ("missing user", {"text": "x", "label": "a"}, r"missing field 'user'"),
    ("missing text", {"user": "john", "label": "a"}, r"missing field 'text'"),
    ("missing label", {"user": "john", "text": "x"}, r"missing field 'label'"),
    ("null label", {"user": "john", "text": "x", "label": None}, r"missing field 'label'"),
    ("empty user", {"user": "  ", "text": "x", "label": "a"}, r"field 'user' is empty"),
    ("empty label", {"user": "john", "text": "x", "label": ""}, r"field 'label' is empty"),
    ("empty text", {"user": "john", "text": "", "label": "a"}, r"field 'text' is empty"),
    ("whitespace text", {"user": "john", "text": " \n\t ", "label": "a"}, r"field 'text' is only whitespace"),
    ("int label", {"user": "john", "text": "x", "label": 1}, r"field 'label' must be a string, got int 1"),
    ("list text", {"user": "john", "text": ["x"], "label": "a"}, r"field 'text' must be a string, got list"),
    ("int item", {**GOOD, "item": 7}, r"field 'item' must be a string, got int 7"),
    ("user with space", {"user": "john smith", "text": "x", "label": "a"}, r"user 'john smith' must be 1-128"),
    ("user with slash", {"user": "../etc", "text": "x", "label": "a"}, r"user '\.\./etc' must be 1-128"),
    ("user too long", {"user": "u" * 129, "text": "x", "label": "a"}, r"must be 1-128 letters"),
    ("bad split", {**GOOD, "split": "dev"}, r"split 'dev' is not one of \['train', 'test'\]"),
    ("text too long", {"user": "john", "text": "x" * 11, "label": "a"}, r"text is 11 characters, over the limit of 10"),
]


@pytest.mark.parametrize(("record", "match"), [c[1:] for c in ROW_ERROR_CASES], ids=[c[0] for c in ROW_ERROR_CASES])
def test_jsonl_bad_row_becomes_error_and_good_rows_are_kept(record: object, match: str) -> None:
    data = jsonl(GOOD, record, {**GOOD, "text": "oil slides"})
    result = parse_labels(data, "jsonl", max_text_chars=10)
    assert [e.line for e in result.errors] == [2]
    assert re.search(match, result.errors[0].message), result.errors[0].message
    assert [(r.line, r.text) for r in result.rows] == [(1, "gold soars"), (3, "oil slides")]


def test_label_not_in_allowed_set_names_label_and_set() -> None:
    data = jsonl(GOOD, {**GOOD, "text": "y", "label": "meh"})
    result = parse_labels(data, "jsonl", allowed_labels={"positive", "negative"})
    assert [r.text for r in result.rows] == ["gold soars"]
    assert result.errors == [RowError(2, "label 'meh' is not one of the allowed labels ['negative', 'positive']")]


def test_every_problem_in_a_row_is_reported_together() -> None:
    result = parse_labels(jsonl({"user": "a b", "text": "  ", "split": "dev"}), "jsonl")
    message = result.errors[0].message
    for part in ("missing field 'label'", "only whitespace", "user 'a b'", "split 'dev'"):
        assert part in message


def test_jsonl_fields_are_parsed_and_user_label_stripped_but_text_kept() -> None:
    record = {"user": " ann_1.x@y-z ", "text": "  Gold soars\n", "label": " pos ", "item": " i1 ", "split": "test",
              "group": "ignored"}
    result = parse_labels(jsonl(record), "jsonl")
    assert result.errors == []
    assert result.rows == [
        LabelRow(line=1, user="ann_1.x@y-z", text="  Gold soars\n", label="pos", item="i1", split="test")
    ]


def test_jsonl_optional_fields_absent_or_empty_are_none() -> None:
    result = parse_labels(jsonl(GOOD, {**GOOD, "text": "y", "item": "", "split": " "}), "jsonl")
    assert [(r.item, r.split) for r in result.rows] == [(None, None), (None, None)]


def test_jsonl_blank_lines_are_skipped_but_counted_for_line_numbers() -> None:
    data = "\n" + json.dumps(GOOD) + "\n   \n\r\n" + "{oops\n\n"
    result = parse_labels(data, "jsonl")
    assert [r.line for r in result.rows] == [2]
    assert [e.line for e in result.errors] == [5]
    assert result.errors[0].message.startswith("invalid JSON:")


def test_jsonl_crlf_and_unicode_line_separator_inside_text() -> None:
    # U+2028 is legal raw inside a JSON string; it must not split the line.
    text = "gold\u2028soars"
    data = json.dumps({**GOOD, "text": text}, ensure_ascii=False) + "\r\n" + json.dumps({**GOOD, "text": "b"}) + "\r\n"
    result = parse_labels(data.encode("utf-8"), "jsonl")
    assert result.errors == []
    assert [(r.line, r.text) for r in result.rows] == [(1, text), (2, "b")]


def test_dedup_keeps_the_last_row_for_a_user_and_text() -> None:
    data = jsonl(
        {**GOOD, "label": "negative"},
        {**GOOD, "user": "jane", "label": "negative"},
        {**GOOD, "text": "other"},
        {**GOOD, "label": "neutral"},
    )
    result = parse_labels(data, "jsonl")
    assert result.errors == []
    assert [(r.line, r.user, r.text, r.label) for r in result.rows] == [
        (2, "jane", "gold soars", "negative"),
        (3, "john", "other", "positive"),
        (4, "john", "gold soars", "neutral"),
    ]


def test_a_bad_later_row_does_not_drop_the_earlier_good_one() -> None:
    result = parse_labels(jsonl(GOOD, {**GOOD, "split": "dev"}), "jsonl")
    assert [r.line for r in result.rows] == [1]
    assert [e.line for e in result.errors] == [2]


# --- whole-file errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt", "exc", "match"),
    [
        (json.dumps(GOOD).encode() + b"\n{\"user\": \"x\xff\"}\n", "jsonl", ValidationError,
         r"not UTF-8: byte 0xff at offset \d+ \(line 2\)"),
        (b"\xef\xbb\xbfuser,text,label\n\xe9,x,y\n", "csv", ValidationError,
         r"not UTF-8: byte 0xe9 at offset 19 \(line 2\)"),
        ("john,gold soars,positive\n", "csv", ValidationError,
         r"CSV header is missing column\(s\) \['user', 'text', 'label'\]"),
        ("user,text\njohn,x\n", "csv", ValidationError,
         r"missing column\(s\) \['label'\]; found columns \['user', 'text'\]"),
        ("", "csv", ValidationError, r"needs a header on line 1"),
        ("\n\n", "csv", ValidationError, r"needs a header on line 1"),
        ("user,text,label,text\n", "csv", ValidationError, r"repeats column\(s\) \['text'\]"),
        (jsonl(GOOD), "xml", ValidationError, r"format 'xml' is not one of \['jsonl', 'csv'\]"),
        (jsonl(GOOD, {**GOOD, "text": "b"}, "{bad"), "jsonl", PayloadTooLargeError, r"has 3 rows, over the limit of 2"),
        ("user,text,label\nj,a,p\nj,b,p\nj,c,p\n", "csv", PayloadTooLargeError, r"has 3 rows, over the limit of 2"),
    ],
    ids=["jsonl-not-utf8", "csv-not-utf8-after-bom", "csv-no-header", "csv-missing-column", "csv-empty",
         "csv-blank", "csv-duplicate-column", "unknown-format", "jsonl-too-many-rows", "csv-too-many-rows"],
)
def test_whole_file_errors(data: bytes | str, fmt: str, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        parse_labels(data, fmt, max_rows=2)


def test_max_rows_at_the_limit_is_fine() -> None:
    assert len(parse_labels(jsonl(GOOD, {**GOOD, "text": "b"}), "jsonl", max_rows=2).rows) == 2


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_utf8_bom_is_accepted(fmt: str) -> None:
    body = jsonl(GOOD) if fmt == "jsonl" else "user,text,label\njohn,gold soars,positive\n"
    for data in (b"\xef\xbb\xbf" + body.encode(), "\ufeff" + body):
        result = parse_labels(data, fmt)
        assert result.errors == []
        assert [(r.user, r.text, r.label) for r in result.rows] == [("john", "gold soars", "positive")]


# --- CSV ---------------------------------------------------------------------------------------------------------


def test_csv_rows_columns_in_any_order_and_extra_columns_ignored() -> None:
    data = "Label , group,User,text,split,item\npositive,g1,john,gold soars,train,i1\nnegative,g2,jane,gold soars,,\n"
    result = parse_labels(data, "csv")
    assert result.errors == []
    assert result.rows == [
        LabelRow(line=2, user="john", text="gold soars", label="positive", item="i1", split="train"),
        LabelRow(line=3, user="jane", text="gold soars", label="negative"),
    ]


def test_csv_multiline_records_report_the_line_they_start_on() -> None:
    data = (
        "user,text,label\n"  # 1
        'john,"gold\nsoars\non news",positive\n'  # 2-4
        "jane,,negative\n"  # 5: empty text
        '"bad user","oil\nslides",negative\n'  # 6-7
        "\n"  # 8: blank
        "john,oil slides,nope\n"  # 9
    )
    result = parse_labels(data, "csv", allowed_labels={"positive", "negative"})
    assert [(r.line, r.text) for r in result.rows] == [(2, "gold\nsoars\non news")]
    assert [(e.line, e.message.split(" ")[:2]) for e in result.errors] == [
        (5, ["field", "'text'"]),
        (6, ["user", "'bad"]),
        (9, ["label", "'nope'"]),
    ]


def test_csv_crlf_line_endings() -> None:
    data = 'user,text,label\r\njohn,"a\r\nb",positive\r\njane,c,negative\r\n'
    result = parse_labels(data, "csv")
    assert result.errors == []
    assert [(r.line, r.text) for r in result.rows] == [(2, "a\r\nb"), (4, "c")]


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ("john,gold, soars,positive", r"record has 4 fields but the header has 3"),
        ("john,positive", r"record has 2 fields but the header has 3"),
        ('john,"gold"soars,positive', r"malformed CSV record"),
    ],
    ids=["too-many-fields", "too-few-fields", "broken-quote"],
)
def test_csv_malformed_records_are_row_errors(record: str, match: str) -> None:
    data = f"user,text,label\njohn,a,positive\n{record}\njane,b,negative\n"
    result = parse_labels(data, "csv")
    assert [r.line for r in result.rows] == [2, 4]
    assert len(result.errors) == 1 and result.errors[0].line == 3
    assert re.search(match, result.errors[0].message), result.errors[0].message


def test_csv_unterminated_quote_is_an_error_on_its_starting_line() -> None:
    data = 'user,text,label\njohn,a,positive\njane,"never closed,negative\njim,c,neutral\n'
    result = parse_labels(data, "csv")
    assert [r.line for r in result.rows] == [2]
    assert [e.line for e in result.errors] == [3]
    assert "malformed CSV record" in result.errors[0].message


# --- format detection and files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "head", "expected"),
    [
        ("labels.jsonl", None, b"", "jsonl"),
        ("labels.JSON", None, b"", "jsonl"),
        ("labels.ndjson", "text/csv", b"", "jsonl"),  # the extension wins over a browser's guess
        ("labels.csv", "application/json", b"", "csv"),
        (None, "text/csv; charset=utf-8", b"", "csv"),
        (None, "application/x-ndjson", b"", "jsonl"),
        ("upload", "application/vnd.ms-excel", b"", "csv"),
        ("labels.txt", "text/plain", b'\xef\xbb\xbf  {"user": "john"}', "jsonl"),
        (None, "application/octet-stream", b"user,text,label\njohn,x,y\n", "csv"),
        (None, None, b"\n\n{}", "jsonl"),
    ],
)
def test_detect_format(filename: str | None, content_type: str | None, head: bytes, expected: str) -> None:
    assert detect_format(filename, content_type, head) == expected


@pytest.mark.parametrize(
    ("filename", "content_type", "head"),
    [
        ("labels.xlsx", "application/octet-stream", b"PK\x03\x04"),
        (None, None, b""),
        ("notes.txt", "text/plain", b"hello"),
        ("labels.tsv", None, b"user\ttext\tlabel\n"),
    ],
)
def test_detect_format_refuses_to_guess(filename: str | None, content_type: str | None, head: bytes) -> None:
    with pytest.raises(ValidationError, match=rf"cannot tell .*{filename!r} \(content type {content_type!r}\)"):
        detect_format(filename, content_type, head)


def test_read_label_file_by_extension_and_explicit_format(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(jsonl(GOOD, {**GOOD, "text": "b", "label": "negative"}), encoding="utf-8")
    (tmp_path / "b.csv").write_text("user,text,label\njohn,gold soars,positive\n", encoding="utf-8")
    (tmp_path / "c.data").write_text("user,text,label\njohn,gold soars,positive\n", encoding="utf-8")
    result = read_label_file(tmp_path / "a.jsonl", max_rows=5)
    assert [r.text for r in result.rows] == ["gold soars", "b"]
    assert infer_label_set(result.rows) == ["negative", "positive"]
    assert [r.label for r in read_label_file(str(tmp_path / "b.csv")).rows] == ["positive"]
    assert [r.label for r in read_label_file(tmp_path / "c.data", fmt="csv").rows] == ["positive"]
    with pytest.raises(ValidationError, match=r"format 'tsv' is not one of"):
        read_label_file(tmp_path / "b.csv", fmt="tsv")
    with pytest.raises(PayloadTooLargeError, match="over the limit of 1"):
        read_label_file(tmp_path / "a.jsonl", max_rows=1)


def test_infer_label_set_is_sorted_and_distinct() -> None:
    rows = [LabelRow(i, "u", f"t{i}", label) for i, label in enumerate(["b", "a", "b", "c"])]
    assert infer_label_set(rows) == ["a", "b", "c"]
    assert infer_label_set([]) == []
