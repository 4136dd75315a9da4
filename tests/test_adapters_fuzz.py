"""Every adapter kind (st_jsonl, table, superni, kilt) fed random and damaged files (hypothesis): truncated gzip,
wrong JSON types, huge lines, NUL bytes, invalid UTF-8, empty files, a folder instead of a file, cut or overwritten
Parquet, a damaged page of KILT's knowledge source.

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
from medi.adapters.kilt import KNOWLEDGE_SOURCE
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
WHERE = re.compile(r"(line \d+|row \d+|Instances\[\d+\])")
# a problem of the whole file says where reading stopped and what that cost: rows lost, or the rest of the file
STOPPED = re.compile(r"unreadable (after line|from row) (\d+): (\d+ rows lost|the rest of the file lost) \(")
HUGE = 3 * (1 << 20)  # a 3 MiB line: longer than any read block or buffer

ST = spec("st/fuzz", "st_jsonl")
TABLE_JSONL = spec("t/fuzz", "table", options={"format": "jsonl", "columns": {"query": "q", "pos": "p", "neg": "n"}})
TABLE_PARQUET = spec(
    "t/fuzz", "table", options={"format": "parquet", "columns": {"query": "q", "pos": "p", "neg": "n"}}
)
SUPERNI = spec("superni/task_fuzz", "superni")
KILT = spec("kilt/fuzz", "kilt")  # its knowledge source (kilt_knowledgesource.json) beside the task file

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

    Problems name the file (KILT: or its knowledge source) and where (line, row, instance), or, for the whole file,
    where reading stopped and the rows that cost; Records hold texts Arrow can store (UTF-8).
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
            assert item.file in (str(path), str(path.parent / KNOWLEDGE_SOURCE)), item
            assert WHERE.fullmatch(item.where) or (item.where == "" and STOPPED.match(item.message)), item
            assert item.rows is None or item.rows >= 0, item
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


# --- KILT: task rows joined with paragraphs of a knowledge source beside them -------------------------------------

PAGES = {  # wikipedia_id -> (title, paragraphs); paragraph 0 is the title line, as in KILT's pages
    str(page): (f"Page {page}", [f"Page {page}\n", *(f"Paragraph {n} of page {page}." for n in range(1, 5))])
    for page in range(1, 6)
}


def knowledge_lines() -> list[bytes]:
    return [
        json.dumps({"_id": page, "wikipedia_id": page, "wikipedia_title": title, "text": text}).encode()
        for page, (title, text) in PAGES.items()
    ]


def write_knowledge(folder: Path, lines: list[bytes] | None = None) -> None:
    (folder / KNOWLEDGE_SOURCE).write_bytes(b"\n".join(knowledge_lines() if lines is None else lines) + b"\n")


def kilt_row(input_text: str, page: str, start: int, span: int) -> dict:
    provenance = {"wikipedia_id": page, "start_paragraph_id": start, "end_paragraph_id": start + span}
    return {"id": "fuzz", "input": input_text, "output": [{"answer": "a", "provenance": [provenance]}]}


kilt_good = st.builds(
    kilt_row, text.map(lambda t: f"q {t}"), st.sampled_from(sorted(PAGES)), st.integers(0, 3), st.integers(0, 1)
)


def kilt_record(value: dict, row: Record) -> bool:
    """The task row's input, and its page's title then the provenance paragraphs (the title line left out)."""
    provenance = value["output"][0]["provenance"][0]
    title, text = PAGES[provenance["wikipedia_id"]]
    paragraphs = text[max(provenance["start_paragraph_id"], 1) : provenance["end_paragraph_id"] + 1]
    return (row.query, row.pos, row.neg) == (value["input"], "\n".join([title, *paragraphs]), None)


# --- line formats: st_jsonl and table (jsonl) ------------------------------------------------------------------

LINE_KINDS = [(ST, st_good, st_record), (TABLE_JSONL, table_good, table_record), (KILT, kilt_good, kilt_record)]
LINE_IDS = ["st_jsonl", "table-jsonl", "kilt"]


@pytest.mark.parametrize(("source_spec", "good", "matches"), LINE_KINDS, ids=LINE_IDS)
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
            write_knowledge(tmp)  # read by the kilt adapter only
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


@pytest.mark.parametrize(("source_spec", "good", "matches"), LINE_KINDS, ids=LINE_IDS)
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
            write_knowledge(tmp)
            items, error = read(source_spec, path)
        assert error is None, error
        keyed = by_line(items)
        for line, value in enumerate(rows[:complete], 1):
            assert isinstance(keyed.get(line), Record) and matches(value, keyed[line]), (line, keyed.get(line))
        last = items[-1] if items else None
        assert isinstance(last, Problem) and last.rows is None, items[-3:]  # the cut is reported: the rest is lost
        stopped = STOPPED.match(last.message)
        assert stopped and stopped.groups() == ("after line", str(complete), "the rest of the file lost"), last

    check()


@FUZZ
@given(rows=st.lists(kilt_good, min_size=1, max_size=12), page=st.sampled_from(sorted(PAGES)), junk=bad_line)
def test_a_damaged_knowledge_source_page_costs_the_rows_that_need_it(rows, page, junk):
    """Junk in place of one page of the knowledge source: the rows citing that page are problems at their lines,
    every other row is joined as it would be with the whole file."""
    lines = [junk if json.loads(line)["wikipedia_id"] == page else line for line in knowledge_lines()]
    with folder() as tmp:
        path = tmp / "rows.jsonl"
        path.write_bytes(jsonl(rows))
        write_knowledge(tmp, lines)
        items, error = read(KILT, path)
    assert error is None, error
    task_items = [item for item in items if not (isinstance(item, Problem) and item.file.endswith(KNOWLEDGE_SOURCE))]
    keyed = by_line(task_items)
    assert sorted(keyed) == list(range(1, len(rows) + 1)) and len(task_items) == len(rows)
    for line, value in enumerate(rows, 1):
        if value["output"][0]["provenance"][0]["wikipedia_id"] == page:
            assert isinstance(keyed[line], Problem) and f"page {page} is not in" in keyed[line].message, keyed[line]
        else:
            assert isinstance(keyed[line], Record) and kilt_record(value, keyed[line]), (line, keyed[line])
    for item in items[: len(items) - len(task_items)]:  # a junk line read as the page: named, costing no row itself
        assert item.where.startswith("line ") and item.rows == 0, item


paragraph_id = json_scalar | st.integers(-2, 6)
provenance_any = st.fixed_dictionaries(
    {"wikipedia_id": json_scalar | st.sampled_from(sorted(PAGES))},
    optional={"start_paragraph_id": paragraph_id, "end_paragraph_id": paragraph_id},
)
output_any = json_scalar | st.lists(
    json_scalar | st.fixed_dictionaries({"provenance": json_scalar | st.lists(json_scalar | provenance_any)}),
    max_size=3,
)
kilt_any = st.fixed_dictionaries({"output": output_any}, optional={"input": json_scalar | text, "passage": json_value})


@FUZZ
@given(rows=st.lists(kilt_any | kilt_good, min_size=1, max_size=10))
def test_kilt_row_fields_of_any_type(rows):
    """Task rows whose input, output, provenance and paragraph ids are of any JSON type: a Record or a Problem at
    each row's line, never a crash."""
    with folder() as tmp:
        path = tmp / "rows.jsonl"
        path.write_bytes(jsonl(rows))
        write_knowledge(tmp)
        items, error = read(KILT, path)
    assert error is None, error
    assert sorted(by_line(items)) == list(range(1, len(rows) + 1)) and len(items) == len(rows)


EMPTY_KINDS = [ST, TABLE_JSONL, TABLE_PARQUET, SUPERNI, KILT]
# what an empty file gives: no rows and no error where an empty file is a valid file of the format (the build then
# counts "the file holds no rows" as a problem); an error naming the file where it is not (Parquet, a task's JSON)
EMPTY_IS_VALID = {"st_jsonl": True, "jsonl": True, "parquet": False, "superni": False, "kilt": True}


@pytest.mark.parametrize("source_spec", EMPTY_KINDS, ids=lambda s: s.options.get("format", s.adapter))
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
    if what in ("empty", "empty-gzip"):
        if EMPTY_IS_VALID[source_spec.options.get("format", source_spec.adapter)]:
            assert (items, error) == ([], None)
        else:
            assert error is not None and items == []
    else:  # not a file to read: an error, or a problem saying reading stopped at once (no row came out)
        assert not [item for item in items if isinstance(item, Record)], items
        stopped = [STOPPED.match(item.message) for item in items]
        assert error is not None or (len(items) == 1 and stopped[0] and stopped[0][2] == "0"), (items, error)


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
    are Records (damage inside a text) up to the damage, then one Problem saying how many rows that lost — the rows
    and the rows lost add up to the rows the file holds."""
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
    hit = range(group * GROUP, min((group + 1) * GROUP, len(rows)))
    covered = []  # the row index of each Record, and of each row a Problem says it lost
    for item in items:
        if isinstance(item, Record):
            index = int(item.row_id.rsplit(":R", 1)[1])
            assert index in hit or table_record(rows[index], item), (index, rows[index], item)
            covered.append(index)
        else:
            stopped = STOPPED.match(item.message)
            assert stopped and stopped[1] == "from row" and stopped[3] == f"{item.rows} rows lost", item
            first = int(stopped[2])
            assert first in hit and first + item.rows == hit.stop, (item, hit)  # the rest of its group, no more
            covered += range(first, first + item.rows)
    assert covered == list(range(len(rows)))


@FUZZ
@given(rows=st.lists(table_good, min_size=1, max_size=12), where=st.floats(0, 1, exclude_max=True))
def test_a_cut_parquet_file_is_an_error_naming_it(rows, where):
    data = parquet_bytes(rows)
    with folder() as tmp:
        path = tmp / "rows.parquet"
        path.write_bytes(data[: int(len(data) * where)])
        items, error = read(TABLE_PARQUET, path)  # checks that the error names the file
    assert error is not None and not items  # no footer, no row groups: nothing can be read


arrow_scalar_types = st.sampled_from([pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.null(), pa.binary()])
arrow_types = st.recursive(
    arrow_scalar_types,
    lambda inner: (
        st.builds(pa.list_, inner)
        | st.builds(
            lambda fields: pa.struct(list(fields.items())), st.dictionaries(st.sampled_from("abc"), inner, min_size=1)
        )
    ),
    max_leaves=4,
)


def values_of(kind: pa.DataType) -> st.SearchStrategy:
    """Python values an Arrow column of type ``kind`` holds (None included: every column is nullable)."""
    if pa.types.is_null(kind):
        return st.none()
    if pa.types.is_list(kind):
        found = st.lists(values_of(kind.value_type), max_size=3)
    elif pa.types.is_struct(kind):
        found = st.fixed_dictionaries({field.name: values_of(field.type) for field in kind})
    else:
        found = {
            pa.int64(): st.integers(-(2**63), 2**63 - 1),
            pa.float64(): st.floats(allow_nan=False),
            pa.bool_(): st.booleans(),
            pa.string(): text,
            pa.binary(): st.binary(max_size=10),
        }[kind]
    return st.none() | found


@st.composite
def arrow_tables(draw) -> pa.Table:
    """Two rows of columns q, p, n or other, each of any Arrow type Parquet stores: every table it makes is one."""
    names = draw(st.lists(st.sampled_from(["q", "p", "n", "other"]), min_size=1, max_size=4, unique=True))
    columns = {}
    for name in names:
        kind = draw(arrow_types)
        columns[name] = pa.array(draw(st.lists(values_of(kind), min_size=2, max_size=2)), type=kind)
    return pa.table(columns)


def column_text(row: dict, column: str) -> str | None:
    """The text the table adapter takes from a column: a string, or a list's first item when that is one."""
    value = row.get(column)
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else None


@FUZZ
@given(table=arrow_tables())
def test_parquet_columns_of_any_type(table):
    """Columns of any Arrow type (ints, floats, bytes, nulls, lists, structs): a Record where the query and positive
    columns give texts, else a Problem at the row — never a crash, never a row left out."""
    with folder() as tmp:
        path = tmp / "rows.parquet"
        pq.write_table(table, path)
        items, error = read(TABLE_PARQUET, path)
    assert error is None, error
    assert len(items) == 2
    for index, (row, item) in enumerate(zip(table.to_pylist(), items, strict=True)):
        query, pos, neg = (column_text(row, column) for column in ("q", "p", "n"))
        if query is None or pos is None:
            assert isinstance(item, Problem) and item.where == f"row {index}", (row, item)
        else:
            assert isinstance(item, Record) and (item.query, item.pos, item.neg) == (query, pos, neg), (row, item)


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
