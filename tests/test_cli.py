"""The ``medi`` command through typer's CliRunner."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Literal, get_args, get_origin, get_type_hints

import pytest
from support import DEMO_MIRROR, MIRROR, dump_yaml, plain, run_in_terminal
from typer.testing import CliRunner

from medi.build import BuildOptions
from medi.cli import app
from medi.encode import BUNDLED
from medi.fetch import find_in_mirrors
from medi.options import BUNDLED_ENCODER, EXECUTION_OPTIONS, STAGE_FLAG_BY_NAME, STAGE_FLAGS, STAGE_OPTIONS
from medi.stages.decontaminate import DecontamConfig
from medi.stages.dedup import DedupConfig
from medi.stages.filter import FilterConfig
from medi.stages.mine import MineConfig

WIDE = {"COLUMNS": "240", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner(env=WIDE)


def lines_of(text: str) -> dict[str, str]:
    """The line of each source name found at its start: a table row ('│ name │ ...') or aligned columns (sources)."""
    rows = {}
    for line in plain(text).splitlines():
        cells = [c.strip() for c in line.strip().strip("│|").split("│")] if "│" in line else line.split()
        if cells and cells[0]:
            rows.setdefault(cells[0], line)
    return rows


def test_sources_lists_the_catalog(runner, catalog):
    result = runner.invoke(app, ["sources", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == sorted(catalog.specs)
    families = Counter(r["name"].split("/", 1)[0] for r in rows)
    assert families["superni"] == 756
    assert families["st"] == 40 and families["flagembedding"] == 8 and families["gritlm"] == 1
    assert {r["status"] for r in rows} == {"remote"}  # no data dir: nothing is local
    assert {r["adapter"] for r in rows} == {"superni", "st_jsonl", "table", "kilt"}


def test_sources_marks_local_with_a_data_dir(runner, catalog):
    result = runner.invoke(app, ["sources", "--json", "--data-dir", str(MIRROR)])
    assert result.exit_code == 0, result.output
    status = {r["name"]: r["status"] for r in json.loads(result.stdout)}
    local = {n for n, s in catalog.specs.items() if find_in_mirrors(s, [MIRROR])}
    assert {n for n, v in status.items() if v == "local"} == local
    assert len(local) == 23 and status["superni/task1146_country_capital"] == "local"
    assert status["st/NQ-train_pairs"] == "remote"


def test_sources_table(runner, catalog):
    result = runner.invoke(app, ["sources", "--data-dir", str(MIRROR)])
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert f"{len(catalog.specs)} sources ({MIRROR})" in text
    rows = lines_of(text)
    assert "local" in rows["superni/task1146_country_capital"]
    assert "remote" in rows["superni/task1657_gooaq_question_generation"]
    assert "remote" in rows["st/NQ-train_pairs"] and "015d73e06b" in rows["st/NQ-train_pairs"]
    assert "unpinned" in rows["kilt/nq"]
    assert "set demo: 19 sources" in text


def test_sources_one_family(runner):
    result = runner.invoke(app, ["sources", "--json", "--family", "flagembedding"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 8


def build_args(sources: str, out: Path, cache_dir: Path, *extra: str) -> list[str]:
    """``medi build`` over the fixture mirror with the session's embedding cache."""
    return [
        "build",
        "--sources",
        sources,
        "--out",
        str(out),
        "--data-dir",
        str(MIRROR),
        "--cache-dir",
        str(cache_dir),
        *extra,
    ]


def test_build_prints_the_summary(runner, tmp_path, cache_dir):
    out = tmp_path / "release"
    result = runner.invoke(app, build_args("st/quora_duplicates,gritlm/toy_data_embedding", out, cache_dir))
    assert result.exit_code == 0, result.output
    text = plain(result.stdout)
    assert "release: 20 rows, 1 shard(s)" in text
    rows = lines_of(text)
    assert "mined 10" in rows["st/quora_duplicates"] and "given 10" in rows["gritlm/toy_data_embedding"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 20 and set(manifest["sources"]) == {"st/quora_duplicates", "gritlm/toy_data_embedding"}
    assert f"wrote {out}" in plain(result.stderr)


def test_build_reports_skipped_sources(runner, tmp_path, cache_dir):
    out = tmp_path / "release"
    sources = "st/quora_duplicates,superni/task1657_gooaq_question_generation"
    result = runner.invoke(app, build_args(sources, out, cache_dir, "--no-remote"))
    assert result.exit_code == 0, result.output
    rows = lines_of(result.stdout)
    assert "skipped: missing_file" in rows["superni/task1657_gooaq_question_generation"]
    assert "task1657_gooaq_question_generation.json" in plain(result.stderr)


def test_build_unknown_source_exits_1(runner, tmp_path):
    args = ["build", "--sources", "superni/task1146_country_captal", "--out", str(tmp_path / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    message = " ".join(plain(result.stderr).split())
    assert "error: unknown source 'superni/task1146_country_captal'" in message
    assert "superni/task1146_country_capital" in message
    assert not (tmp_path / "x").exists()


def test_build_test_task_exits_1(runner, tmp_path):
    args = ["build", "--sources", "superni/task1562_zest_text_modification", "--out", str(tmp_path / "x")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "Super-NI test task" in " ".join(plain(result.stderr).split())


def test_build_bad_option_exits_2(runner, tmp_path):
    args = ["build", "--sources", "st/AllNLI", "--out", str(tmp_path / "x"), "--on-error", "ignore"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "Invalid value for '--on-error': 'ignore' is not one of 'skip', 'fail'" in plain(result.stderr)


def test_build_on_error_fail_exits_1(runner, tmp_path):
    args = [
        "build",
        "--sources",
        "st/NQ-train_pairs",
        "--out",
        str(tmp_path / "x"),
        "--data-dir",
        str(MIRROR),
        "--no-remote",
        "--on-error",
        "fail",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    message = " ".join(plain(result.stderr).split())
    assert "not in the mirror" in message and "NQ-train_pairs.jsonl.gz" in message


# ---- issue 21: one options model, --config with flags, bad values, output that fits, Ctrl-C ----

MEDI = [sys.executable, "-m", "medi.cli"]
BUILD_FLAGS = {name: field for name, field in BuildOptions.model_fields.items() if name not in STAGE_OPTIONS}
STAGE_CONFIGS = {"mining": MineConfig, "dedup": DedupConfig, "decontaminate": DecontamConfig, "filter": FilterConfig}


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def help_line(lines: list[str], flag: str) -> str:
    """The piped help's line of ``flag`` (one unwrapped line per option; a long option's help is on the next)."""
    at = next(i for i, line in enumerate(lines) if re.match(rf"\s+{flag}[ /]", line))
    below = lines[at + 1] if at + 1 < len(lines) and lines[at + 1].startswith(" " * 20) else ""
    return f"{lines[at]} {below.strip()}"


def test_build_flags_are_generated_from_build_options(runner):
    """Every BuildOptions field (the stage dicts aside) is a flag with its description, choices, range and
    default; help piped is one whole line per option."""
    result = runner.invoke(app, ["build", "--help"])
    assert result.exit_code == 0, result.output
    lines = plain(result.stdout).splitlines()
    for name, field in BUILD_FLAGS.items():
        line = help_line(lines, flag_of(name))
        assert field.description and field.description in line, name
        if field.default not in (None, False, ""):
            shown = name.replace("_", "-") if field.default is True else field.default
            assert f"default: {shown}" in line, name
        low = next((rule.ge for rule in field.metadata if hasattr(rule, "ge")), None)
        high = next((rule.le for rule in field.metadata if hasattr(rule, "le")), None)
        if low is not None or high is not None:
            shown = (
                f"{low}<=x<={high}"
                if low is not None and high is not None
                else f"x>={low}"
                if high is None
                else f"x<={high}"
            )
            assert shown in line, name
    assert "--instructions <primary|paraphrase|none>" in plain(result.stdout)
    assert "pip install 'medi[ray]'" in help_line(lines, "--engine")
    for flag in STAGE_FLAGS:
        line = help_line(lines, flag.flag)
        shown = flag.flag.removeprefix("--") if flag.default is True else flag.default
        assert flag.help in line and f"default: {shown}" in line


def test_stage_flags_agree_with_the_stage_configs():
    """STAGE_FLAGS live in the light medi.options; their defaults and choices are the stage configs' own."""
    assert not set(STAGE_FLAG_BY_NAME) & set(BuildOptions.model_fields)
    for flag in STAGE_FLAGS:
        config = STAGE_CONFIGS[flag.option]
        assert getattr(config(), flag.key) == flag.config_value(flag.default), flag.flag
        if get_origin(flag.annotation) is not Literal:
            continue
        hint = get_type_hints(config)[flag.key]
        if get_origin(hint) is Literal:
            assert get_args(hint) == get_args(flag.annotation), flag.flag
        else:  # a str the config checks itself
            for choice in get_args(flag.annotation):
                config(**{flag.key: choice})
            with pytest.raises(ValueError):
                config(**{flag.key: "bogus"})
    assert BUNDLED_ENCODER == BUNDLED


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--max-per-source", "-5", "must be greater than or equal to 1"),
        ("--max-per-source", "0", "must be greater than or equal to 1"),
        ("--shard-rows", "0", "must be greater than or equal to 1"),
        ("--workers", "0", "must be greater than or equal to 1"),
        ("--diverse-share", "1.5", "must be less than or equal to 1"),
        ("--score-rows", "-1", "must be greater than or equal to 0"),
        ("--token-budget", "-1", "must be greater than or equal to 0"),
        ("--select", "best", "'best' is not one of 'random', 'diverse'"),
        ("--negatives-from", "hard", "'hard' is not one of 'mined', 'random', 'none'"),
    ],
)
def test_bad_values_name_the_flag_and_the_allowed_range(runner, tmp_path, flag, value, rule):
    result = runner.invoke(app, ["build", "--sources", "st/AllNLI", "--out", str(tmp_path / "x"), flag, value])
    assert result.exit_code == 2
    error = " ".join(plain(result.stderr).split())
    assert f"Invalid value for '{flag}': {rule}" in error
    assert "pydantic" not in error and "_" not in error.split("Invalid value", 1)[1].split(":", 1)[0]
    assert not (tmp_path / "x").exists()


def test_config_with_flags_the_flags_override(runner, tmp_path, cache_dir):
    """`--config X --max-per-source 3 --seed 7` used to build with the config's values; now every flag given
    overrides its option (a flag given with its default value too), stderr says which, the manifest has them."""
    config = dump_yaml(
        {
            "sources": "st/quora_duplicates",
            "data_dirs": [str(MIRROR)],
            "out": str(tmp_path / "from-config"),
            "options": {"seed": 0, "max_per_source": 50000, "select": "diverse", "mining": {"score_rows": 128}},
        },
        tmp_path / "build.yaml",
    )
    out = tmp_path / "release"
    flags = ["--max-per-source", "3", "--seed", "7", "--select", "random", "--score-rows", "2", "--eval-sets", "none"]
    result = runner.invoke(
        app, ["build", "--config", str(config), "--out", str(out), "--cache-dir", str(cache_dir), *flags]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    options = manifest["config"]
    assert (options["seed"], options["max_per_source"], options["select"]) == (7, 3, "random")
    assert options["mining"] == {"score_rows": 2} and options["eval_sets"] == "none"
    assert manifest["rows"] == 3 and manifest["sources"]["st/quora_duplicates"]["dropped"] == {"over_cap": 7}
    said = plain(result.stderr)
    assert f"--config {config}: flags override it:" in said
    overrides = ["--max-per-source 3 overrides max_per_source: 50000", "--seed 7 overrides seed: 0",
                  "--select random overrides select: diverse", "--score-rows 2 overrides mining.score_rows: 128",
                  "--eval-sets none overrides eval_sets: mirror",
                  f"--out {out} overrides out: {config.parent}/from-config"]  # fmt: skip
    for line in overrides:
        assert f"\n  {line}\n" in said, line
    assert not (tmp_path / "from-config").exists()


def test_flags_without_config_and_defaults_left_out(runner, tmp_path, cache_dir):
    """Without --config the flags given are the options; a stage dict holds only the keys whose flags were given
    (the same manifest config as `medi.build` with BuildOptions())."""
    out = tmp_path / "release"
    args = build_args("st/quora_duplicates", out, cache_dir, "--token-budget", "0", "--across-sources", "remove")
    assert runner.invoke(app, args).exit_code == 0
    options = json.loads((out / "manifest.json").read_text())["config"]
    assert options["filter"] == {"token_budget": None} and options["dedup"] == {"across_sources": "remove"}
    assert options["mining"] == {} and options["decontaminate"] == {}
    assert options == {**BuildOptions().model_dump(mode="json", exclude=EXECUTION_OPTIONS),
                       "filter": {"token_budget": None}, "dedup": {"across_sources": "remove"}}  # fmt: skip


def test_help_is_whole_at_80_columns_on_a_terminal(tmp_path):
    """typer's boxed help cut `--require-reviewed` and defaults to fit 80 (and 100) columns."""
    for columns in (80, 100):
        code, text = run_in_terminal([*MEDI, "build", "--help"], columns, cwd=tmp_path, timeout=120)
        assert code == 0, text
        assert "…" not in text and max(len(line) for line in text.splitlines()) <= columns
        shown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", text))
        expected = {flag_of(name) for name in BUILD_FLAGS} | {f.flag for f in STAGE_FLAGS}
        assert expected <= shown, expected - shown
        assert "--no-require-reviewed" in shown and "[default: bundled:all-MiniLM-L6-v2]" in text
    code, text = run_in_terminal([*MEDI, "--help"], 80, cwd=tmp_path, timeout=120)  # click cut summaries with "..."
    commands = text.split("Commands:")[1]
    assert code == 0 and "..." not in commands and max(len(line) for line in text.splitlines()) <= 80
    assert "Build a release: `medi build --sources demo --out out/demo` or `--config manifests/demo/build.yaml`." in (
        " ".join(text.split())
    )


def test_summary_keeps_source_names_whole_piped_and_at_80_columns(tmp_path, cache_dir):
    """Piped: one aligned line per source, its name whole; on an 80-column terminal the table, too wide, becomes
    each source's name on a line and its cells below (rich's table folded names into 6-character pieces)."""
    sources = "superni/task1146_country_capital,gritlm/toy_data_embedding"
    args = [*MEDI, *build_args(sources, tmp_path / "piped", cache_dir)]
    piped = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=600)
    assert piped.returncode == 0, piped.stderr
    manifest = json.loads((tmp_path / "piped" / "manifest.json").read_text())
    lines = piped.stdout.splitlines()
    assert lines[1].split() == ["source", "read", "kept", "dropped", "(why)", "negatives", "pos", "/", "neg", "score"]
    for name, source in manifest["sources"].items():
        line = next(line for line in lines if line.startswith(name + " "))
        assert line.split()[1:3] == [str(source["rows_read"]), str(source["rows_kept"])]
    code, text = run_in_terminal([*MEDI, *build_args(sources, tmp_path / "terminal", cache_dir)], 80)
    assert code == 0, text
    for name, source in manifest["sources"].items():
        at = text.splitlines().index(name)  # the name alone on its line
        assert text.splitlines()[at + 1].startswith(f"  read {source['rows_read']}; kept {source['rows_kept']};")


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path):
    """A real SIGINT to a real build, once its first source is mined: exit 130, a line saying what was kept and
    that the same command resumes; and the same command then resumes from it."""
    cache = tmp_path / "cache"  # a cache of its own: no stage output is there before this build
    sources = "superni/task1146_country_capital,superni/task1355_sent_comp_summarization"
    command = [*MEDI, "build", "--sources", sources, "--data-dir", str(DEMO_MIRROR), "--out", str(tmp_path / "out"),
               "--cache-dir", str(cache), "--batch-size", "8"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "300"}
    # Ctrl-C's default handling in the child: a disposition this pytest process inherited or was given (SIG_IGN is
    # inherited through exec, and Python then installs no KeyboardInterrupt handler) must not decide the test
    restore = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=restore
    ) as build:
        try:
            hung_after = time.monotonic() + 600  # the subprocess's timeout: a build that never mines fails the test
            while len(list((cache / "stages").glob("mine/*.json"))) < 1:
                assert build.poll() is None, build.communicate()
                assert time.monotonic() < hung_after, "the build never finished a mine stage"
                time.sleep(0.05)
            build.send_signal(signal.SIGINT)
            _, said = build.communicate(timeout=600)
        finally:
            build.kill()
    assert build.returncode == 130, said
    said = " ".join(plain(said).split())
    kept = r"interrupted: kept the \d+ stage outputs this run finished \(sample \d+, .*mine 1; 1 source\(s\) mined\)"
    assert re.search(f"{kept} in {re.escape(str(cache / 'stages'))}, and the embeddings encoded so far", said), said
    assert f"no release was written to {tmp_path / 'out'}" in said
    assert "Run the same command again to resume from them (--fresh recomputes everything)." in said
    assert not (tmp_path / "out").exists()
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert re.search(r"resumed: reused [4-9] finished stage outputs", again.stderr), again.stderr
