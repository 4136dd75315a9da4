"""Every adapter kind fed random and damaged files (hypothesis): truncated gzip, wrong JSON types, huge lines, NUL
bytes, invalid UTF-8, empty files, a folder instead of a file, cut or overwritten Parquet.

Whatever the damage, reading ends in Records, Problems naming the file and the line (row, instance), or a
MediError naming the file — never another exception — and no good row is lost: every good row before the damage
(and, for damage confined to one line or instance, every good row after it) comes out as it went in. Parquet
can be read only back to the last intact row group with its footer; a file cut before the footer is an error.

Examples are bounded and derandomized (the same cases on every run, no example database written).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import spec

from medi.adapters import get_adapter
from medi.adapters.superni import META_KEYS
from medi.errors import MediError, Problem
from medi.schema import Record

FUZZ = settings(
    max_examples=30,
    deadline=None,  # house rule: no time limits in tests
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
WHERE = re.compile(r"(line \d+|after line \d+|row \d+|after row \d+|Instances\[\d+\])")
HUGE = 3 * (1 << 20)  # a 3 MiB line: longer than any read block or buffer

ST = spec("st/fuzz", "st_jsonl")
TABLE_JSONL = spec("t/fuzz", "table", options={"format": "jsonl", "columns": {"query": "q", "pos": "p", "neg": "n"}})
TABLE_PARQUET = spec(
    "t/fuzz", "table", options={"format": "parquet", "columns": {"query": "q", "pos": "p", "neg": "n"}}
)
SUPERNI = spec("superni/task_fuzz", "superni")

# --- strategies ---------------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=40)  # valid, encodable texts
json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
json_value = st.recursive(
    json_scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
)
st_good = st.one_of(
    st.lists(text, min_size=2, max_size=3),
    st.builds(lambda members: {"set": members}, st.lists(text, min_size=2, max_size=4)),
    st.builds(
        lambda q, pos, neg: {"query": q, "pos": pos, **({"neg": neg} if neg is not None else {})},
        text,
        text | st.lists(text, min_size=1, max_size=3),
        st.none() | text | st.lists(text, min_size=1, max_size=3),
    ),
)
table_good = st.builds(
    lambda q, p, n: {"q": q, "p": p, **({"n": n} if n is not None else {})}, text, text, st.none() | text
)
bad_bytes = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ")),  # anything at all
    st.just(b'["a\x00b", "c"]'),  # NUL inside a string (a raw control character: not JSON)
    st.just(b"\x00\x00\x00"),
    st.just(b'["\xff\xfe caf\xe9", "x"]'),  # Latin-1, not UTF-8
    st.just(b'{"q": "\xc3", "p": "x"}'),  # a cut UTF-8 sequence
    st.just(b'["\\ud800", "x"]'),  # a lone surrogate escape: valid JSON, but no text
    st.just(b"[" * 5000 + b"]" * 5000),  # nested deeper than any parser's recursion
    st.just(b"1" * 400),  # an integer no 64-bit parser holds
    st.just(b"x" * HUGE),  # a huge line of garbage
    st.just(json.dumps(["q" * HUGE, "p"]).encode()),  # a huge valid row
)
bad_line = st.one_of(bad_bytes, json_value.map(lambda v: json.dumps(v).encode()))


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def read(source_spec, path: Path) -> tuple[list[Record | Problem], MediError | None]:
    """What the adapter gives up to the end or a MediError (which must name the file); nothing else may raise.

    Problems name the file and where (line, row, instance); Records hold texts Arrow can store (UTF-8).
    """
    items, error = [], None
    try:
        for item in get_adapter(source_spec.adapter, source_spec.name)(path, source_spec, 0).rows:
            items.append(item)
    except MediError as exc:
        assert str(path) in str(exc), exc
        error = exc
    for item in items:
        assert isinstance(item, Record | Problem), item
        if isinstance(item, Problem):
            assert item.file == str(path) and WHERE.fullmatch(item.where), item
        else:
            for value in (item.query, item.pos, item.neg, *item.outputs):
                assert value is None or (isinstance(value, str) and value.encode("utf-8") is not None), item
    return items, error


def by_line(items: list[Record | Problem]) -> dict[int, Record | Problem]:
    """Each item keyed by the line it came from (Records: ``L<n>`` ids; Problems: ``line <n>``)."""
    keyed = {}
    for item in items:
        if isinstance(item, Record):
            keyed[int(item.row_id.rsplit(":L", 1)[1])] = item
        elif item.where.startswith("line "):
            keyed[int(item.where.split()[1])] = item
    return keyed


def st_record(value: object, row: Record) -> bool:
    """Whether ``row`` is what the st_jsonl layouts make of ``value``."""
    if isinstance(value, list):
        return [row.query, row.pos] + ([row.neg] if row.neg is not None else []) == value
    if "set" in value:
        return row.query in value["set"] and row.pos in value["set"] and row.neg is None
    pos = value["pos"] if isinstance(value["pos"], list) else [value["pos"]]
    neg = value.get("neg")
    neg = neg if isinstance(neg, list) else ([neg] if neg is not None else [])
    return row.query == value["query"] and row.pos in pos and (row.neg in neg if neg else row.neg is None)


def table_record(value: dict, row: Record) -> bool:
    return (row.query, row.pos, row.neg) == (value["q"], value["p"], value.get("n"))


def jsonl(rows: list[object]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


# --- line formats: st_jsonl and table (jsonl) ------------------------------------------------------------------

LINE_KINDS = [(ST, st_good, st_record), (TABLE_JSONL, table_good, table_record)]


@pytest.mark.parametrize(("source_spec", "good", "matches"), LINE_KINDS, ids=["st_jsonl", "table-jsonl"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_a_damaged_line_costs_that_line_only(source_spec, good, matches, gz):
    @FUZZ
    @given(before=st.lists(good, max_size=6), damage=st.lists(bad_line, min_size=1, max_size=3),
           after=st.lists(good, max_size=6))  # fmt: skip
    def check(before, damage, after):
        content = jsonl(before) + b"".join(line + b"\n" for line in damage) + jsonl(after)
        with folder() as tmp:
            path = tmp / ("rows.jsonl.gz" if gz else "rows.jsonl")
            path.write_bytes(gzip.compress(content) if gz else content)
            items, error = read(source_spec, path)
        assert error is None, error
        keyed = by_line(items)
        bad = range(len(before) + 1, len(before) + len(damage) + 1)
        good_lines = [*enumerate(before, 1), *enumerate(after, bad.stop)]
        for line, value in good_lines:
            assert isinstance(keyed.get(line), Record) and matches(value, keyed[line]), (line, value, keyed.get(line))
        for line, raw in zip(bad, damage, strict=True):
            if raw.strip():  # a blank line is skipped, anything else is a row or a problem at its line
                assert line in keyed, (line, raw[:80], items)
        assert len(items) == len(good_lines) + sum(1 for raw in damage if raw.strip())

    check()


@pytest.mark.parametrize(("source_spec", "good", "matches"), LINE_KINDS, ids=["st_jsonl", "table-jsonl"])
def test_a_truncated_gzip_keeps_every_complete_line(source_spec, good, matches):
    @FUZZ
    @given(rows=st.lists(good, min_size=1, max_size=30), cut=st.floats(0, 1, exclude_max=True))
    def check(rows, cut):
        content = jsonl(rows)
        packed = gzip.compress(content)
        kept = packed[: int(len(packed) * cut)]
        readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(kept)  # what any reader can get back
        complete = readable.count(b"\n")
        with folder() as tmp:
            path = tmp / "rows.jsonl.gz"
            path.write_bytes(kept)
            items, error = read(source_spec, path)
        assert error is None, error
        keyed = by_line(items)
        for line, value in enumerate(rows[:complete], 1):
            assert isinstance(keyed.get(line), Record) and matches(value, keyed[line]), (line, keyed.get(line))
        last = items[-1] if items else None
        assert isinstance(last, Problem) and "unreadable" in last.message, items[-3:]  # the cut is reported
        assert last.where.startswith("after line ") and int(last.where.split()[-1]) >= complete, last

    check()


@pytest.mark.parametrize(
    "source_spec", [ST, TABLE_JSONL, TABLE_PARQUET, SUPERNI], ids=lambda s: s.options.get("format", s.adapter)
)
@pytest.mark.parametrize("what", ["empty", "empty-gzip", "folder", "missing"])
def test_empty_files_folders_and_missing_files(source_spec, what):
    with folder() as tmp:
        path = tmp / ("input.gz" if what == "empty-gzip" else "input")
        if what == "folder":
            path.mkdir()
            (path / "inside.jsonl").write_text('["a", "b"]\n')
        elif what == "empty":
            path.write_bytes(b"")
        elif what == "empty-gzip":
            path.write_bytes(gzip.compress(b""))
        items, error = read(source_spec, path)
        assert all(isinstance(item, Problem) for item in items)  # no rows out of nothing
        if what in ("folder", "missing"):
            assert items or error, "a folder or a missing file is not an empty source"


# --- table (parquet) ---------------------------------------------------------------------------------------------

GROUP = 4  # rows per row group: damage in one group costs that group at most


def parquet_bytes(rows: list[dict]) -> bytes:
    table = pa.table({key: [row.get(key) for row in rows] for key in ("q", "p", "n")})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=GROUP)
    return sink.getvalue()


def chunk_starts(data: bytes) -> list[int]:
    """Where each row group's first column chunk begins (its first page header)."""
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    starts = []
    for group in range(meta.num_row_groups):
        column = meta.row_group(group).column(0)
        starts.append(column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset)
    return starts


def footer_start(data: bytes) -> int:
    """Where the file metadata begins (it ends 8 bytes before the end: its length and ``PAR1``)."""
    return len(data) - 8 - int.from_bytes(data[-8:-4], "little")


@FUZZ
@given(rows=st.lists(table_good, min_size=1, max_size=24), group=st.integers(0, 5), offset=st.integers(0, 60),
       junk=st.binary(min_size=1, max_size=40))  # fmt: skip
def test_damaged_parquet_costs_the_damaged_row_group_only(rows, group, offset, junk):
    """Junk over a row group's pages: the rows of every other group are read as written; the damaged group's rows
    are Records (damage inside a text), or one Problem per row lost — never fewer rows than the file holds."""
    data = parquet_bytes(rows)
    starts = chunk_starts(data)
    group = group % len(starts)
    at = starts[group] + offset
    end = min(at + len(junk), footer_start(data), starts[group + 1] if group + 1 < len(starts) else len(data))
    damaged = data[:at] + junk[: max(end - at, 0)] + data[max(end, at) :]
    with folder() as tmp:
        path = tmp / "rows.parquet"
        path.write_bytes(damaged)
        items, error = read(TABLE_PARQUET, path)
    assert error is None, error
    assert len(items) == len(rows)
    hit = range(group * GROUP, min((group + 1) * GROUP, len(rows)))
    for index, (value, item) in enumerate(zip(rows, items, strict=True)):
        if index in hit:
            assert isinstance(item, Record) or item.where == f"row {index}", (index, item)
        else:
            assert isinstance(item, Record) and table_record(value, item), (index, value, item)


@FUZZ
@given(rows=st.lists(table_good, min_size=1, max_size=12), where=st.floats(0, 1, exclude_max=True))
def test_a_cut_parquet_file_is_an_error_naming_it(rows, where):
    data = parquet_bytes(rows)
    with folder() as tmp:
        path = tmp / "rows.parquet"
        path.write_bytes(data[: int(len(data) * where)])
        items, error = read(TABLE_PARQUET, path)  # checks that the error names the file
    assert error is not None and not items  # no footer, no row groups: nothing can be read


@FUZZ
@given(columns=st.dictionaries(st.sampled_from(["q", "p", "n", "other"]), json_value, min_size=1))
def test_parquet_columns_of_any_type(columns):
    """Columns of any Arrow type (ints, lists, structs, nulls, mixed): rows or Problems, never a crash."""
    with folder() as tmp:
        path = tmp / "rows.parquet"
        try:
            pq.write_table(pa.table({name: [value, value] for name, value in columns.items()}), path)
        except (pa.ArrowException, OverflowError):
            return  # not a table Arrow or Parquet can hold (mixed types, empty structs): nothing to feed the adapter
        items, error = read(TABLE_PARQUET, path)
    assert error is None, error
    assert len(items) == 2


# --- superni: one JSON document per task --------------------------------------------------------------------------

instance_good = st.builds(
    lambda i, inp, out: {"id": f"task_fuzz-{i}", "input": inp, "output": out},
    st.integers(0, 10**6),
    text,
    st.lists(text, max_size=3),
)


def task(instances: list) -> dict:
    return {"Definition": ["Do the thing."], "Categories": ["Fuzzing"], "Source": ["fuzz"], "Instances": instances}


@FUZZ
@given(before=st.lists(instance_good, max_size=5), damage=st.lists(json_value, min_size=1, max_size=3),
       after=st.lists(instance_good, max_size=5))  # fmt: skip
def test_superni_wrong_instance_types_cost_those_instances(before, damage, after):
    instances = before + damage + after
    with folder() as tmp:
        path = tmp / "task_fuzz.json"
        path.write_text(json.dumps(task(instances), indent=1), encoding="utf-8")
        items, error = read(SUPERNI, path)
    assert error is None, error
    assert len(items) == len(instances)
    for index, instance in [*enumerate(before), *enumerate(after, len(before) + len(damage))]:
        record = items[index]
        assert isinstance(record, Record), (index, record)
        assert record.query == instance["input"] and list(record.outputs) == instance["output"]
    for index in range(len(before), len(before) + len(damage)):
        assert isinstance(items[index], Record) or items[index].where == f"Instances[{index}]"


@FUZZ
@given(instances=st.lists(instance_good, min_size=1, max_size=5), where=st.floats(0, 1, exclude_max=True),
       junk=bad_bytes, how=st.sampled_from(["insert", "cut", "gzip"]))  # fmt: skip
def test_superni_damaged_file_is_an_error_naming_file_and_line(instances, where, junk, how):
    content = json.dumps(task(instances), indent=1).encode()
    at = int(len(content) * where)
    damaged = {"insert": content[:at] + junk + content[at:], "cut": content[:at], "gzip": gzip.compress(content)}[how]
    with folder() as tmp:
        path = tmp / "task_fuzz.json"
        path.write_bytes(damaged)
        items, error = read(SUPERNI, path)
    if error is not None:
        assert re.search(r"line \d+|nested too deeply", str(error)), error
    else:  # junk that leaves valid JSON (inside a string, say): every instance is still read, or named
        assert all(isinstance(item, Record) or item.where.startswith("Instances[") for item in items)


@FUZZ
@given(meta=st.dictionaries(st.sampled_from(META_KEYS), json_value, min_size=1), instances=st.lists(instance_good))
def test_superni_task_fields_of_any_type(meta, instances):
    """Definition, Categories, Source, ... of any JSON type: a task the build can use, or an error naming the file."""
    with folder() as tmp:
        path = tmp / "task_fuzz.json"
        path.write_text(json.dumps({**meta, "Instances": instances}), encoding="utf-8")
        items, error = read(SUPERNI, path)
        if error is None:
            adapted = get_adapter("superni", SUPERNI.name)(path, SUPERNI, 0)
            for value in adapted.meta.values():
                assert value is None or isinstance(value, str) or all(isinstance(v, str) for v in value), value
            assert len(items) == len(instances)


LONE_SURROGATES = [
    (ST, "rows.jsonl", b'["\\ud800", "a lone surrogate"]\n["kept", "row"]\n'),
    (TABLE_JSONL, "rows.jsonl", b'{"q": "\\udfff", "p": "x"}\n{"q": "kept", "p": "row"}\n'),
    (SUPERNI, "task_fuzz.json", json.dumps(task([{"input": "\ud800", "output": []}, {"input": "kept"}])).encode()),
]


@pytest.mark.parametrize(("source_spec", "name", "content"), LONE_SURROGATES, ids=["st_jsonl", "table", "superni"])
def test_a_lone_surrogate_is_a_problem_at_its_row(source_spec, name, content):
    """JSON's ``\\ud800`` escape is valid JSON but no text: Arrow, hashing and the manifest cannot hold it."""
    with folder() as tmp:
        path = tmp / name
        path.write_bytes(content)
        items, error = read(source_spec, path)  # asserts every Record's texts encode as UTF-8
    assert error is None and len(items) == 2
    assert isinstance(items[0], Problem) and isinstance(items[1], Record) and items[1].query == "kept"
