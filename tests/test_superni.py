"""Super-NaturalInstructions quirks on the real task files of tests/fixtures/mirror: many outputs, an empty output,
a task number used twice, long inputs, test tasks and a task that shares its Source with a test task."""

from __future__ import annotations

import shutil

import pytest
from support import MIRROR, TASKS, quiet_console, spec, squash, task_file

import medi
from medi.adapters import get_adapter
from medi.build import BuildOptions
from medi.catalog import Catalog
from medi.errors import MediError, SourceError
from medi.schema import Record
from medi.stages.normalize import NormalizeReport, normalize

T1146 = "task1146_country_capital"
T1319 = "task1319_country_by_barcode_prefix"
T293 = "task293_storycommonsense_emotion_text_generation"
T672 = "task672_amazon_and_yelp_summarization_dataset_summarization"
T861 = ("task861_asdiv_addsub_question_answering", "task861_prost_mcq_answers_generation")
T120 = "task120_zest_text_modification"
T1562 = "task1562_zest_text_modification"


def read_task(task: str):
    source = spec(f"superni/{task}", "superni", options={"mining": "auto"})
    return get_adapter("superni", source.name)(TASKS / f"{task}.json", source, 0)


def test_task_file_rows_and_meta():
    raw = task_file(T1146)
    adapted = read_task(T1146)
    rows = list(adapted.rows)
    assert len(rows) == len(raw["Instances"]) == 231
    for row, instance in zip(rows, raw["Instances"], strict=True):
        assert isinstance(row, Record)
        assert row.row_id == f"superni/{T1146}:{instance['id']}"
        assert row.query == instance["input"]
        assert row.outputs == tuple(instance["output"])
        assert row.pos is None and row.neg is None
    assert adapted.meta["Source"] == raw["Source"] == ["country_capital_city_dataset"]
    assert adapted.meta["Categories"] == raw["Categories"]
    assert adapted.meta["Definition"] == raw["Definition"]
    assert adapted.meta["Instance License"] == raw["Instance License"]


def test_many_outputs_task1319(mirror_release):
    raw = task_file(T1319)
    rows = list(read_task(T1319).rows)
    assert [r.outputs for r in rows] == [tuple(i["output"]) for i in raw["Instances"]]
    assert max(len(r.outputs) for r in rows) == 21

    source = mirror_release.manifest["sources"][f"superni/{T1319}"]
    assert source["rows_read"] == source["rows_kept"] == len(raw["Instances"]) == 101
    assert source["dropped"] == {} and source["mining"]["mode"] == "generation"
    inputs = {i["input"] for i in raw["Instances"]}
    built = mirror_release.rows_of(f"superni/{T1319}")
    assert len(built) == 101
    assert all(r["query"]["text"] in inputs and r["pos"]["text"] in inputs for r in built)


def test_empty_output_removed_and_counted_task293(mirror_release):
    raw = task_file(T293)
    with_empty = [i for i in raw["Instances"] if "" in i["output"]]
    assert len(with_empty) == 1
    instance = with_empty[0]
    row_id = f"superni/{T293}:{instance['id']}"

    report = NormalizeReport()
    records = {r.row_id: r for r in normalize(read_task(T293).rows, report)}
    assert report.changed["empty_output_removed"] == 1
    assert records[row_id].outputs == tuple(o for o in instance["output"] if o) == ("horribl", "guilty", "ire")
    assert all("" not in r.outputs for r in records.values())

    source = mirror_release.manifest["sources"][f"superni/{T293}"]
    assert source["changed"] == {"empty_output_removed": 1}
    assert source["rows_read"] == source["rows_kept"] == 200
    assert row_id in {r["row_id"] for r in mirror_release.rows_of(f"superni/{T293}")}


def test_duplicate_task_number_task861(mirror_release):
    """Two different tasks share the number 861: both build, as two tasks, with row ids that never collide."""
    manifest = mirror_release.manifest
    names = [f"superni/{t}" for t in T861]
    ids_in_files = {t: {i["id"] for i in task_file(t)["Instances"]} for t in T861}
    assert all(i.startswith("task861-") for ids in ids_in_files.values() for i in ids)

    task_ids = {t["task_name"]: t["task_id"] for t in manifest["tasks"]}
    assert set(names) <= set(task_ids) and task_ids[names[0]] != task_ids[names[1]]
    for name, task in zip(names, T861, strict=True):
        assert manifest["sources"][name]["rows_kept"] == len(ids_in_files[task]) > 0
        rows = mirror_release.rows_of(name)
        assert {r["task_id"] for r in rows} == {task_ids[name]}
        assert {r["row_id"] for r in rows} == {f"{name}:{i}" for i in ids_in_files[task]}
        assert all(r["pos_ref"].startswith(f"{name}:") and r["neg_ref"].startswith(f"{name}:") for r in rows)

    row_ids = mirror_release.dataset["row_id"]
    assert len(row_ids) == len(set(row_ids))


def test_long_texts_truncated_task672(make_release, mirror_release, tmp_path):
    raw = task_file(T672)
    max_chars = 1500
    inputs = [squash(i["input"]) for i in raw["Instances"]]
    outputs = [o for i in raw["Instances"] for o in i["output"]]
    assert min(len(t) for t in inputs) > max_chars > max(len(o) for o in outputs)

    name = f"superni/{T672}"
    assert "truncated_text" not in mirror_release.manifest["sources"][name]["changed"]  # 8,000 by default

    release = make_release(name, tmp_path / "out", [MIRROR], max_chars=max_chars)
    source = release.manifest["sources"][name]
    assert source["changed"] == {"truncated_text": len(inputs)}
    assert source["rows_kept"] == len(inputs) == 40
    assert release.manifest["config"]["max_chars"] == max_chars
    for row in release.dataset:
        for side in ("query", "pos", "neg"):
            text = row[side]["text"]
            assert 0 < len(text) <= max_chars
            assert any(full.startswith(squash(text)) for full in inputs)


def test_test_task_refused_by_name(tmp_path, catalog):
    assert T1562 in catalog.superni_test_tasks
    assert f"superni/{T1562}" not in catalog.specs
    with pytest.raises(MediError, match=f"superni/{T1562} is a Super-NI test task"):
        catalog.resolve(f"superni/{T1562}")
    with pytest.raises(MediError, match="test task"):
        medi.build(f"superni/{T1146},superni/{T1562}", tmp_path / "out", [MIRROR], console=quiet_console())
    assert not (tmp_path / "out").exists()


def test_no_test_task_enters_a_release(mirror_release, catalog):
    """The fixture mirror holds three test task files (task1562, task891, task1345); none is built."""
    test_tasks = catalog.superni_test_tasks
    in_mirror = {p.stem for p in TASKS.glob("*.json")} & test_tasks
    assert in_mirror == {T1562, "task891_gap_coreference_resolution", "task1345_glue_qqp_question_paraprashing"}
    built = {t["task_name"] for t in mirror_release.manifest["tasks"]}
    assert not {n.split("/", 1)[1] for n in built} & test_tasks


def add_task120(medi_home):
    body = {
        "adapter": "superni",
        "upstream": {
            "kind": "git",
            "repo": "allenai/natural-instructions",
            "path": f"tasks/{T120}.json",
            "revision": "e0fd31052b21acea5bd95fb00253e1ee1f5d8259",
        },
        "mirror": f"super-ni/tasks/{T120}.json",
        "licence": "Apache 2.0",
        "symmetric": True,
        "options": {"mining": "auto"},
    }
    medi_home.add_source(f"superni/{T120}", body)
    catalog = Catalog.load()
    assert T120 not in catalog.superni_train_tasks | catalog.superni_test_tasks  # excluded upstream
    assert task_file(T120)["Source"] == task_file(T1562)["Source"] == ["zest"]


@pytest.mark.parametrize("shipped_table", [True, False], ids=["shipped-test-sources", "mirror-test-file-only"])
def test_task_sharing_a_test_source_is_skipped(medi_home, make_release, tmp_path, shipped_table):
    add_task120(medi_home)
    if not shipped_table:  # only the test task file in the mirror can tell that task1562's Source is zest
        (medi_home.root / "sources" / "superni" / "_test_sources.yaml").unlink()
    name = f"superni/{T120}"
    release = make_release(f"{name},superni/{T1319}", tmp_path / "out", [MIRROR])
    skipped = release.manifest["skipped_sources"]
    assert list(skipped) == [name]
    assert skipped[name]["reason"] == "shares_test_source"
    assert "zest" in skipped[name]["message"] and T1562 in skipped[name]["message"]
    assert name not in release.manifest["sources"]
    assert {t["task_name"] for t in release.manifest["tasks"]} == {f"superni/{T1319}"}
    assert f"skipped {name}" in release.log


def test_task_sharing_a_test_source_fails_with_on_error_fail(medi_home, tmp_path):
    add_task120(medi_home)
    with pytest.raises(SourceError, match="shares Source") as caught:
        medi.build(
            f"superni/{T120}", tmp_path / "out", [MIRROR], BuildOptions(on_error="fail"), console=quiet_console()
        )
    assert caught.value.reason == "shares_test_source" and caught.value.source == f"superni/{T120}"
    assert not (tmp_path / "out").exists()


def test_excluded_task_without_its_test_task_is_not_refused(medi_home, make_release, tmp_path):
    """Control: the refusal comes from the test task's Source, not from the task being outside the train split."""
    add_task120(medi_home)
    (medi_home.root / "sources" / "superni" / "_test_sources.yaml").unlink()
    mirror = tmp_path / "mirror" / "super-ni" / "tasks"
    mirror.mkdir(parents=True)
    shutil.copy(TASKS / f"{T120}.json", mirror)
    release = make_release(f"superni/{T120}", tmp_path / "out", [tmp_path / "mirror"])
    assert release.manifest["skipped_sources"] == {}
    assert release.manifest["sources"][f"superni/{T120}"]["rows_read"] == len(task_file(T120)["Instances"])
