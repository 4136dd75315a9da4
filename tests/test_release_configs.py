"""The checked-in release configs (manifests/<release>/build.yaml) load as `medi build --config` reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import PROJECT_ROOT

from medi.build import ReleaseConfig
from medi.errors import MediError

CONFIGS = sorted((PROJECT_ROOT / "manifests").glob("*/build.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_release_config_loads_and_names_catalog_sources(path: Path, catalog):
    config = ReleaseConfig.load(path)
    specs, _ = catalog.resolve(config.sources)
    assert specs


def test_medi_config_selects_exactly_the_medi_members_with_their_caps(catalog):
    config = ReleaseConfig.load(PROJECT_ROOT / "manifests" / "medi" / "build.yaml")
    specs, _ = catalog.resolve(config.sources)
    members = {name for name, spec in catalog.specs.items() if spec.medi.included}
    assert [spec.name for spec in specs] == sorted(members)
    assert len(members) == 37 and {"st/reddit-title-body", "st/gigaword", "st/scitldr", "bio/pubmedqa"} <= members
    assert config.options.max_per_source is None  # the catalog's medi.cap applies
    caps = {spec.name: spec.medi.cap for spec in specs}
    assert caps["st/codesearchnet"] == 1_000_000 and caps["st/scitldr"] == 1990 and caps["kilt/trex"] == 200_000
    assert sum(cap is not None for cap in caps.values()) == 33


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("mining: {bogus: 1}", "build option mining: unknown keys ['bogus']"),
        ("mining: {score_rows: -1}", "build option mining: score_rows must be 0 or more"),
        ("dedup: {near_thresold: 0.8}", "build option dedup: unknown keys ['near_thresold']"),
    ],
)
def test_a_wrong_stage_option_names_the_config_file_before_any_work(tmp_path, option, message):
    path = tmp_path / "build.yaml"
    path.write_text(f"sources: demo\nout: {tmp_path / 'out'}\noptions:\n  {option}\n", encoding="utf-8")
    with pytest.raises(MediError) as caught:
        ReleaseConfig.load(path)
    assert str(caught.value).startswith(f"{path}: {message}")
