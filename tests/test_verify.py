"""``medi verify`` and the release reader's bad-input errors, on copies of a real built release."""

from __future__ import annotations

import json
import shutil

import pytest
from support import plain
from typer.testing import CliRunner

from medi.cli import app
from medi.errors import MediError
from medi.fetch import sha256_file
from medi.release import open_release
from medi.release.export import export
from medi.release.verify import verify_release

WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}
SHARD = "data-00000-of-00001.arrow"


@pytest.fixture
def copy(demo_release, tmp_path):
    """A private copy of the demo release, safe to damage."""
    folder = tmp_path / "release"
    shutil.copytree(demo_release.out, folder)
    return folder


def edit_manifest(folder, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def flip_byte(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_intact_release_verifies(copy, demo_release):
    verdict = verify_release(copy)
    assert verdict.ok, verdict.problems
    assert (verdict.rows, verdict.tasks) == (demo_release.manifest["rows"], len(demo_release.manifest["tasks"]))
    result = CliRunner(env=WIDE).invoke(app, ["verify", str(copy)])
    assert result.exit_code == 0, result.output
    assert f"ok: {copy}" in plain(result.stdout)


def test_a_flipped_byte_in_a_text_is_caught_and_named(copy, demo_release):
    shard = copy / SHARD
    size = shard.stat().st_size
    flip_byte(shard, size // 2)  # inside the string data: Arrow itself still reads the file
    assert open_release(copy).dataset.num_rows == demo_release.manifest["rows"]  # invisible without the checksum ...
    verdict = verify_release(copy)
    assert verdict.problems == [
        f"{shard}: sha256 {sha256_file(shard)[:12]}…, the manifest says "
        f"{json.loads((copy / 'manifest.json').read_text())['shards'][0]['sha256'][:12]}… (content changed)"
    ]
    result = CliRunner(env=WIDE).invoke(app, ["verify", str(copy)])
    assert result.exit_code == 1
    assert str(shard) in plain(result.output) and "sha256" in plain(result.output)
    with pytest.raises(MediError, match="content changed"):  # ... and exports check it before reading
        open_release(copy, verify_checksums=True).check_shards()
    exported = CliRunner(env=WIDE).invoke(
        app, ["export", str(copy), "--format", "medi2", "--out", str(copy.parent / "m2")]
    )
    assert exported.exit_code == 1 and SHARD in plain(exported.output)
    stats = CliRunner(env=WIDE).invoke(app, ["stats", str(copy)])
    assert stats.exit_code == 1 and f"{shard}: sha256" in " ".join(plain(stats.output).split())
    as_json = CliRunner(env=WIDE).invoke(app, ["verify", str(copy), "--json"])
    verdict = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and verdict["ok"] is False and verdict["problems"][0].startswith(f"{shard}: sha256")


def test_a_truncated_shard_is_named(copy):
    shard = copy / SHARD
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size * 2 // 3])
    problems = verify_release(copy).problems
    assert problems and all(p.startswith(f"{shard}: ") for p in problems)
    assert f"{shard}: not a readable Arrow shard, damaged or truncated" in "\n".join(problems)
    with pytest.raises(MediError, match=f"{shard}: .*truncated"):
        _ = open_release(copy).dataset
    edit_manifest(copy, lambda m: m.pop("files", None))  # a manifest listing shards only: Arrow finds the cut
    about_shard = [p for p in verify_release(copy).problems if p.startswith(f"{shard}: ")]
    assert about_shard == [next(p for p in problems if p.startswith(f"{shard}: not a readable Arrow shard"))]
    with pytest.raises(MediError, match=f"{shard}: not a readable Arrow shard, damaged or truncated"):
        _ = open_release(copy).dataset


def test_a_missing_shard_and_an_extra_file(copy):
    (copy / SHARD).unlink()
    (copy / "notes.txt").write_text("not part of the release")
    (copy / "plots").mkdir()
    (copy / "plots" / "rows.png").write_bytes(b"\x89PNG")  # medi stats --plots inside the release is fine
    problems = verify_release(copy).problems
    assert f"{copy / SHARD}: missing (listed in the manifest)" in problems
    assert f"{copy / 'notes.txt'}: not listed in the manifest (extra file)" in problems
    assert not any("plots" in p for p in problems)


def test_counts_and_the_task_index_are_checked(copy, demo_release):
    rows = demo_release.manifest["rows"]
    allnli = next(t["rows"] for t in demo_release.manifest["tasks"] if t["task_name"] == "st/AllNLI")

    def tamper(manifest):
        manifest["rows"] = rows - 1
        manifest["tasks"][3]["first_row"] += 1
        manifest["shards"][0]["rows"] = rows - 44
        manifest["sources"]["st/AllNLI"]["rows_kept"] = allnli + 1

    edit_manifest(copy, tamper)
    problems = verify_release(copy).problems
    where = copy / "manifest.json"
    task3 = json.loads(where.read_text())["tasks"][3]
    assert f"{copy / SHARD}: {rows} rows, the manifest says {rows - 44}" in problems
    assert (
        f"{where}: task {task3['task_name']} starts at row {task3['first_row']}, expected {task3['first_row'] - 1}"
        in (problems)
    )
    assert f"{where}: tasks hold {rows} rows, the manifest says rows={rows - 1}" in problems
    assert f"{where}: source st/AllNLI kept {allnli + 1} rows, its task holds {allnli}" in problems


def test_a_release_of_no_rows_is_not_a_good_one(copy):
    """medi build writes none (it fails instead); one from an older medi, or emptied by hand, fails verify."""

    def empty(manifest):
        manifest["rows"], manifest["tasks"] = 0, []

    edit_manifest(copy, empty)
    verdict = verify_release(copy)
    assert f"{copy / 'manifest.json'}: the release holds no rows (a build that kept nothing)" in verdict.problems
    result = CliRunner(env=WIDE).invoke(app, ["verify", str(copy)])
    assert result.exit_code != 0 and "the release holds no rows" in " ".join(plain(result.output).split())


def test_rows_of_another_task_inside_a_range_are_named(copy):
    def swap(manifest):  # two tasks' ranges exchanged: counts add up, the rows do not match
        tasks = manifest["tasks"]
        tasks[0]["task_name"], tasks[1]["task_name"] = tasks[1]["task_name"], tasks[0]["task_name"]

    edit_manifest(copy, swap)
    first = json.loads((copy / "manifest.json").read_text())["tasks"][0]
    rows = first["rows"]
    expected = f"rows 0..{rows - 1} (task {first['task_name']}): {rows} rows have another task_name"
    assert any(expected in p for p in verify_release(copy).problems)


def test_state_json_must_name_the_shards(copy):
    state = copy / "state.json"
    data = json.loads(state.read_text())
    data["_data_files"] = []
    state.write_text(json.dumps(data))
    assert f"{state}: lists shards [], the manifest lists ['{SHARD}']" in verify_release(copy).problems


def test_manifest_files_list_covers_every_file(copy):
    """With ``manifest["files"]`` (every file but manifest.json), a changed dataset_info.json is caught too."""
    names = sorted(p.name for p in copy.iterdir() if p.name != "manifest.json")
    files = [{"file": n, "bytes": (copy / n).stat().st_size, "sha256": sha256_file(copy / n)} for n in names]
    edit_manifest(copy, lambda m: m.update(files=files))
    assert verify_release(copy).ok
    info = copy / "dataset_info.json"
    info.write_text(info.read_text().replace("MEDI-style release", "MEDI-style  release"))
    problems = verify_release(copy).problems
    assert len(problems) == 2 and all(p.startswith(f"{info}: ") for p in problems)  # size and sha256
    shard = copy / SHARD
    shard.write_bytes(shard.read_bytes()[:-100])
    problems = verify_release(copy).problems
    assert any(p.startswith(f"{shard}: ") and "(truncated)" in p for p in problems)


def test_missing_or_foreign_manifests(copy, tmp_path):
    manifest = copy / "manifest.json"
    text = manifest.read_text()
    manifest.unlink()
    with pytest.raises(MediError, match=f"{manifest}: no manifest"):
        open_release(copy)
    assert verify_release(copy).problems == [f"{manifest}: no manifest; is {copy} a medi release?"]

    manifest.write_text('{"features": {}, "splits": {"train": 10}}')  # some other tool's JSON
    with pytest.raises(MediError, match="not a medi manifest"):
        open_release(copy)

    manifest.write_text(text[:200])
    with pytest.raises(MediError, match=r"manifest.json, line \d+: invalid JSON"):
        open_release(copy)

    manifest.write_text(text)
    edit_manifest(copy, lambda m: m.update(format=2, medi_version="0.9.0"))
    with pytest.raises(MediError, match=r"release format 2 \(written by medi 0.9.0\); this medi reads format 1"):
        open_release(copy)

    manifest.write_text(text)
    edit_manifest(copy, lambda m: m.pop("tasks"))
    with pytest.raises(MediError, match="key 'tasks' is missing"):
        open_release(copy)

    with pytest.raises(MediError, match="no such release folder"):
        open_release(tmp_path / "nowhere")


def test_a_release_with_another_schema(copy):
    manifest = copy / "manifest.json"
    info = copy / "dataset_info.json"
    data = json.loads(info.read_text())
    data["features"].pop("neg_ref")
    data["features"]["label"] = {"dtype": "int64", "_type": "Value"}
    info.write_text(json.dumps(data))
    with pytest.raises(MediError, match=rf"{info}: columns differ from this medi's schema \(\+label -neg_ref\)"):
        open_release(copy)
    assert manifest.is_file()
    assert verify_release(copy).problems[0].startswith(f"{info}: columns differ")


def test_export_from_a_verified_copy_still_works(copy, demo_release, tmp_path):
    report = export(open_release(copy, verify_checksums=True), "parquet", tmp_path / "pq")
    assert sum(f["rows"] for f in report["files"]) == demo_release.manifest["rows"]
