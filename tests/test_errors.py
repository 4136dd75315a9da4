"""Bad input and bad catalog entries: every error names the file (and line) and what is wrong."""

from __future__ import annotations

import json
import re

import pytest
from support import BAD, FIXTURES, FLAG, MIRROR, json_lines, quiet_console, squash

import medi
from medi.adapters.superni import load_task
from medi.build import BuildOptions
from medi.catalog import Catalog
from medi.errors import MediError, SourceError
from medi.fetch import find_in_mirrors

BAD_LINES = BAD / "bad_lines.jsonl"


def build(sources, tmp_path, data_dirs=None, **options):
    return medi.build(sources, tmp_path / "out", data_dirs, BuildOptions(**options), console=quiet_console())


def add_bad_sources(medi_home):
    """Sources over the files in tests/fixtures/bad/ (data dir = tests/fixtures, so mirror paths start bad/)."""
    medi_home.add_source(
        "tests/bad_lines",
        {"adapter": "st_jsonl", "mirror": "bad/bad_lines.jsonl", "licence": "MIT", "symmetric": True},
    )
    for stem in ("task_broken", "task_no_instances"):
        medi_home.add_source(f"tests/{stem}", {"adapter": "superni", "mirror": f"bad/{stem}.json", "symmetric": True})
    medi_home.add_instructions(["tests/bad_lines", "tests/task_broken", "tests/task_no_instances"])


# --- malformed rows ---------------------------------------------------------------------------------------------


def test_bad_lines_skipped_and_recorded(medi_home, make_release, tmp_path):
    add_bad_sources(medi_home)
    lines = BAD_LINES.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6
    release = make_release("tests/bad_lines", tmp_path / "out", [FIXTURES])
    source = release.manifest["sources"]["tests/bad_lines"]
    assert source["rows_read"] == 6 and source["rows_kept"] == 4
    assert source["dropped"] == {"malformed_row": 2}
    assert len(source["problems"]) == 2
    line3, line5 = source["problems"]
    assert str(BAD_LINES) in line3 and "line 3" in line3 and "invalid JSON" in line3
    assert str(BAD_LINES) in line5 and "line 5" in line5 and "not a known layout: a int" in line5
    kept = {r["row_id"] for r in release.dataset}
    assert kept == {f"tests/bad_lines:L{n}" for n in (1, 2, 4, 6)}
    queries = [r["query"]["text"] for r in release.dataset]
    assert queries == [" ".join(json.loads(lines[n - 1])["query"].split()) for n in (1, 2, 4, 6)]


def test_bad_lines_fail(medi_home, tmp_path):
    add_bad_sources(medi_home)
    with pytest.raises(MediError) as caught:
        build("tests/bad_lines", tmp_path, [FIXTURES], on_error="fail")
    message = str(caught.value)
    assert str(BAD_LINES) in message and "line 3" in message and "line 5" not in message
    assert not (tmp_path / "out").exists()


def test_broken_task_file_names_the_file_and_line(medi_home, tmp_path):
    path = BAD / "task_broken.json"
    with pytest.raises(json.JSONDecodeError) as parsed:
        json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(SourceError) as caught:
        load_task(path, "tests/task_broken")
    assert caught.value.reason == "malformed_file"
    assert f"{path}, line {parsed.value.lineno} column" in str(caught.value)

    add_bad_sources(medi_home)
    manifest = build("tests/task_broken,tests/bad_lines", tmp_path, [FIXTURES])
    skipped = manifest["skipped_sources"]["tests/task_broken"]
    assert skipped["reason"] == "malformed_file" and f"line {parsed.value.lineno}" in skipped["message"]
    assert manifest["sources"]["tests/bad_lines"]["rows_kept"] == 4  # the other source still builds

    with pytest.raises(SourceError, match=rf"task_broken\.json, line {parsed.value.lineno}"):
        build("tests/task_broken", tmp_path, [FIXTURES], on_error="fail")


def test_task_without_instances(medi_home, tmp_path):
    path = BAD / "task_no_instances.json"
    assert "Instances" not in json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(SourceError, match=r"task_no_instances\.json: a Super-NI task needs an `Instances` list"):
        load_task(path, "tests/task_no_instances")
    add_bad_sources(medi_home)
    with pytest.raises(SourceError, match="Instances"):
        build("tests/task_no_instances", tmp_path, [FIXTURES], on_error="fail")


def damaged_parquet(tmp_path, damage: str):
    """A Parquet file of real rows in two row groups, then damaged: cut half-way (no footer), or the first page of
    its first row group overwritten."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"q": r["query"], "p": r["pos"][0]} for r in json_lines(FLAG / "retrieval" / "nli.jsonl")]
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.Table.from_pylist(rows), whole, row_group_size=len(rows) // 2)
    data = bytearray(whole.read_bytes())
    if damage == "cut":  # a download that stopped half-way
        data = data[: len(data) // 2]
    else:  # bit rot inside the data: the footer still reads, the first page header does not
        offset = pq.ParquetFile(whole).metadata.row_group(0).column(0).data_page_offset
        data[offset : offset + 40] = b"\xff" * 40
    path = tmp_path / "mirror" / f"{damage}.parquet"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def test_unreadable_parquet_is_a_source_error(medi_home, make_release, tmp_path):
    """With on_error=skip a Parquet file cut before its footer skips its source (naming the file); the others
    still build."""
    path = damaged_parquet(tmp_path, "cut")
    medi_home.add_source(
        "tests/damaged_parquet",
        {"adapter": "table", "mirror": path.name, "options": {"columns": {"query": "q", "pos": "p"}}},
    )
    medi_home.add_instructions(["tests/damaged_parquet"])
    release = make_release("tests/damaged_parquet,st/AllNLI", tmp_path / "out", [path.parent, MIRROR])
    skipped = release.manifest["skipped_sources"]["tests/damaged_parquet"]
    assert skipped["reason"] == "malformed_file" and str(path) in skipped["message"]
    assert release.manifest["sources"]["st/AllNLI"]["rows_kept"] == 20

    with pytest.raises(SourceError, match="readable") as caught:
        build("tests/damaged_parquet", tmp_path, [path.parent], on_error="fail")
    assert caught.value.reason == "malformed_file" and str(path) in str(caught.value)


def test_a_damaged_parquet_page_costs_its_row_group_only(medi_home, make_release, tmp_path):
    """Row groups are read one by one: the damaged group is one problem saying how many rows it lost (the footer
    knows), the other group's rows are kept; the counts add up; with on_error=fail it stops the build."""
    path = damaged_parquet(tmp_path, "bad_page")
    medi_home.add_source(
        "tests/damaged_parquet",
        {"adapter": "table", "mirror": path.name, "options": {"columns": {"query": "q", "pos": "p"}}},
    )
    medi_home.add_instructions(["tests/damaged_parquet"])
    release = make_release("tests/damaged_parquet", tmp_path / "out", [path.parent])
    source = release.manifest["sources"]["tests/damaged_parquet"]
    assert (
        source["rows_read"] == 10 and source["dropped"]["unreadable"] == 5 and "malformed_row" not in source["dropped"]
    )
    assert source["rows_read"] == source["rows_kept"] + sum(source["dropped"].values())
    assert source["problem_count"] == 1 and source["rows_lost"] == {"unreadable": 5} and source["rest_lost"] == 0
    (problem,) = source["problems"]
    assert problem.startswith(f"{path}: unreadable from row 0: 5 rows lost (row group 0, rows 0-4, is damaged: ")
    second_group = {squash(r["query"]) for r in json_lines(FLAG / "retrieval" / "nli.jsonl")[5:]}
    assert release.manifest["rows"] > 0 and {row["query"]["text"] for row in release.dataset} <= second_group

    with pytest.raises(MediError, match=rf"{re.escape(str(path))}: unreadable from row 0: 5 rows lost \(row group 0"):
        build("tests/damaged_parquet", tmp_path, [path.parent], on_error="fail")


# --- missing files and names ------------------------------------------------------------------------------------


def test_missing_mirror_file_names_the_expected_path(tmp_path):
    name = "superni/task1657_gooaq_question_generation"  # in the catalog (and demo/mirror), not in tests/fixtures
    expected = MIRROR / "super-ni" / "tasks" / "task1657_gooaq_question_generation.json"
    assert not expected.exists()
    with pytest.raises(SourceError) as caught:
        build(name, tmp_path, [MIRROR], remote=False, on_error="fail")
    assert caught.value.reason == "missing_file" and str(expected) in str(caught.value)

    console = quiet_console()
    with pytest.raises(MediError, match=r"nothing written to .*: the build kept 0 rows"):  # a failed build ...
        medi.build(name, tmp_path / "out", [MIRROR], BuildOptions(remote=False), console=console)
    assert not (tmp_path / "out").exists()  # ... leaves no release that could pass for a good one
    said = squash(console.file.getvalue())
    assert f"skipped {name}: " in said and str(expected) in said  # why, on stderr


def test_unknown_source_names_the_closest(catalog):
    with pytest.raises(MediError, match="unknown source 'superni/task1146_country_captal'") as caught:
        catalog.resolve("superni/task1146_country_captal")
    assert "superni/task1146_country_capital" in str(caught.value)


def test_unknown_source_stops_the_build(tmp_path):
    with pytest.raises(MediError, match=r"closest: .*st/AllNLI"):
        build("st/AllNL", tmp_path, [MIRROR])
    assert not (tmp_path / "out").exists()


def test_empty_selection(catalog):
    with pytest.raises(MediError, match="no sources selected"):
        catalog.resolve(" , ")


def test_wrong_key_in_a_source_file(medi_home):
    path = medi_home.add_source_text(
        "st/typo",
        "adapter: st_jsonl\nmirror: embedding-training-data/AllNLI.jsonl.gz\nsymetric: true\n",
    )
    with pytest.raises(MediError) as caught:
        Catalog.load()
    assert str(path) in str(caught.value) and "symetric" in str(caught.value)


def test_wrong_value_in_a_source_file(medi_home):
    path = medi_home.add_source_text(
        "st/bad_upstream", "adapter: st_jsonl\nupstream: {kind: ftp, repo: a/b, path: c}\n"
    )
    with pytest.raises(MediError, match=r"upstream\.kind") as caught:
        Catalog.load()
    assert str(path) in str(caught.value)


def test_invalid_yaml_in_a_source_file(medi_home):
    path = medi_home.add_source_text("st/broken", "adapter: st_jsonl\noptions: {columns: [\n")
    with pytest.raises(MediError, match="invalid YAML") as caught:
        Catalog.load()
    assert str(path) in str(caught.value)


def test_sources_without_instructions_are_all_listed(medi_home, tmp_path):
    for stem in ("no_words_a", "no_words_b"):
        medi_home.add_source(
            f"tests/{stem}", {"adapter": "st_jsonl", "mirror": "embedding-training-data/AllNLI.jsonl.gz"}
        )
    with pytest.raises(MediError, match="sources without usable instructions") as caught:
        build("tests", tmp_path, [MIRROR])
    message = str(caught.value)
    assert "tests/no_words_a: no entry in instructions/tests.yaml" in message
    assert "tests/no_words_b: no entry in instructions/tests.yaml" in message
    assert not (tmp_path / "out").exists()


def test_rejected_and_draft_instructions(medi_home, tmp_path):
    medi_home.add_source("tests/rejected", {"adapter": "st_jsonl", "mirror": "embedding-training-data/AllNLI.jsonl.gz"})
    path = medi_home.add_instructions(["tests/rejected"])
    path.write_text(path.read_text().replace("status: draft", "status: rejected"))
    with pytest.raises(MediError, match=r"tests/rejected: its instructions in instructions/tests\.yaml are rejected"):
        build("tests/rejected", tmp_path, [MIRROR])
    medi_home.set_draft("st/AllNLI")  # an entry nobody has reviewed yet, whatever the shipped file says
    with pytest.raises(MediError, match=r"st/AllNLI: its instructions in instructions/st\.yaml are draft"):
        build("st/AllNLI", tmp_path, [MIRROR], require_reviewed=True)


def test_bad_instruction_entry_names_file_and_source(medi_home):
    path = medi_home.root / "instructions" / "tests.yaml"
    path.write_text('tests/x:\n  query: ["Represent the text:"]\n  stauts: draft\n', encoding="utf-8")
    from medi.stages.instruct import InstructionBook

    with pytest.raises(MediError, match=r"tests\.yaml: tests/x: stauts"):
        InstructionBook.load(medi_home.root)


# --- --sources all with a partial mirror ---------------------------------------------------------------------------


def test_all_builds_what_the_mirror_has(mirror_release, catalog):
    has = {name for name, s in catalog.specs.items() if find_in_mirrors(s, [MIRROR])}
    manifest = mirror_release.manifest
    assert set(manifest["sources"]) == has
    assert len(has) == 23
    assert manifest["skipped_sources"] == {}
    absent = manifest["absent_sources"]
    assert absent["count"] == len(absent["names"]) == len(catalog.specs) - len(has)
    assert set(absent["names"]) == set(catalog.specs) - has
    assert "st/NQ-train_pairs" in absent["names"] and "kilt/nq" in absent["names"]
    assert all(s["rows_kept"] > 0 for s in manifest["sources"].values())
    assert manifest["data_dirs"] == [str(MIRROR)]


def test_a_family_with_a_partial_mirror(make_release, tmp_path, catalog):
    release = make_release("st", tmp_path / "st", [MIRROR])
    st_names = {n for n in catalog.specs if n.startswith("st/")}
    built = set(release.manifest["sources"])
    assert built == {
        "st/AllNLI",
        "st/flickr30k_captions",
        "st/msmarco-triplets",
        "st/quora_duplicates",
        "st/searchQA_top5_snippets",
    }
    assert set(release.manifest["absent_sources"]["names"]) == st_names - built


# --- the Hub, unreachable ----------------------------------------------------------------------------------------


def test_hub_offline_is_set():
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE


@pytest.mark.parametrize("data_dirs", [[MIRROR], None], ids=["with-mirror", "no-data-dir"])
def test_hub_unreachable(tmp_path, data_dirs, cache_dir, catalog):
    name = "st/NQ-train_pairs"  # a hub source the fixture mirror lacks
    spec_ = catalog.specs[name]
    assert spec_.upstream.kind == "hub" and not find_in_mirrors(spec_, [MIRROR])

    console = quiet_console()
    with pytest.raises(MediError, match="the build kept 0 rows"):
        medi.build(name, tmp_path / "out", data_dirs, BuildOptions(remote=True), cache_dir=cache_dir, console=console)
    assert not (tmp_path / "out").exists()
    said = squash(console.file.getvalue())  # the skip line, unwrapped
    assert f"skipped {name}: could not download" in said and "--data-dir" in said and spec_.mirror in said

    with pytest.raises(SourceError, match="--data-dir") as caught:
        medi.build(
            name,
            tmp_path / "out2",
            data_dirs,
            BuildOptions(remote=True, on_error="fail"),
            cache_dir=cache_dir,
            console=quiet_console(),
        )
    assert caught.value.reason == "hub_unreachable"
    assert spec_.upstream.repo in str(caught.value)


def test_no_remote_means_missing_not_unreachable(tmp_path):
    with pytest.raises(SourceError) as caught:
        build("st/NQ-train_pairs", tmp_path, [MIRROR], remote=False, on_error="fail")
    assert caught.value.reason == "missing_file"
    assert str(MIRROR / "embedding-training-data" / "NQ-train_pairs.jsonl.gz") in str(caught.value)


def test_local_path_source_missing(medi_home, tmp_path):
    medi_home.add_source("tests/local", {"adapter": "st_jsonl", "path": "data/missing.jsonl"})
    medi_home.add_instructions(["tests/local"])
    with pytest.raises(SourceError, match="file not found") as caught:
        build("tests/local", tmp_path, on_error="fail")
    assert str(medi_home.root / "data" / "missing.jsonl") in str(caught.value)
