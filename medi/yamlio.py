"""Fast YAML reading for the catalog: libyaml (PyYAML's C parser) with YAML 1.2 core-schema scalars.

The catalog is ~800 small files; ruamel.yaml's pure-Python parser needs ~1.5 s for them, libyaml ~0.1 s. Values
mean what ruamel (YAML 1.2) makes of them — ``yes``/``on``/``no`` stay strings, ``010`` is ten — and a repeated key
is an error, not a silent overwrite; ``tests/test_cli_start.py`` checks both readers agree on every shipped file.
Files that are edited in place (instructions, review) keep using ruamel's round-trip mode.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path

import yaml
from yaml.constructor import ConstructorError

from medi.atomic import atomic_write
from medi.errors import MediError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the pure-Python loader where libyaml is missing

# YAML 1.2 core schema, as ruamel.yaml resolves it (ruamel.yaml.resolver.implicit_resolvers, version (1, 2))
_CORE_SCALARS = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (
        "tag:yaml.org,2002:float",
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        "-+0123456789.",
    ),
    (
        "tag:yaml.org,2002:int",
        r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$",
        "-+0123456789",
    ),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", "<"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (
        "tag:yaml.org,2002:timestamp",
        r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
        "0123456789",
    ),
]


class CoreLoader(_Base):
    """libyaml's parser; YAML 1.2 core-schema scalars; duplicate keys refused."""

    yaml_implicit_resolvers: dict = {}  # noqa: RUF012 (PyYAML's class registry)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = self.construct_scalar(node).replace("_", "")
        sign = -1 if text[0] == "-" else 1
        text = text.lstrip("+-")
        for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
            if text.startswith(prefix):
                return sign * int(text[2:], base)
        return sign * int(text)  # 1.2: a leading zero is no octal

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: the base class raises its own error
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


for _tag, _pattern, _first in _CORE_SCALARS:
    CoreLoader.add_implicit_resolver(_tag, re.compile(_pattern, re.X), list(_first))
CoreLoader.add_constructor("tag:yaml.org,2002:int", CoreLoader.construct_yaml_int)


def load_yaml(path: Path):
    """Parse one YAML file; invalid YAML is a MediError naming the file, line and column."""
    return _parse(_read(path), path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MediError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _parse(data: bytes, path: Path):
    stream = io.BytesIO(data)
    stream.name = str(path)  # libyaml's error marks name the file
    try:
        return yaml.load(stream, Loader=CoreLoader)
    except yaml.YAMLError as exc:
        raise MediError(f"{path}: invalid YAML: {exc}") from exc


class ParsedCache:
    """Parsed YAML by content hash, kept in one pickle (``<cache>/catalog.pkl``): a file is parsed again only when
    its bytes change. Reading and hashing the ~800 catalog files takes ~15 ms; parsing them ~300 ms.

    The cache is an optimisation: a missing, damaged or unwritable one means parsing, never a failure.
    """

    def __init__(self, file: Path):
        self.file = file
        self.used: dict[str, object] = {}
        self.missed = 0
        try:
            with open(file, "rb") as handle:
                self.known = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, IndexError, TypeError):
            self.known = {}  # none yet, or written by an incompatible medi: parse every file once more
        if not isinstance(self.known, dict):
            self.known = {}

    def load(self, path: Path):
        data = _read(path)
        key = hashlib.blake2b(data, digest_size=16).hexdigest()
        if key not in self.known:
            self.known[key] = _parse(data, path)
            self.missed += 1
        self.used[key] = self.known[key]
        return self.used[key]  # shared by files with the same bytes: callers read it, never change it

    def save(self) -> None:
        """Write the entries this run used (so the file never grows past one catalog), if any file was new."""
        if not self.missed:
            return
        try:  # whole or not at all: concurrent runs each write a complete file
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.file, "wb") as handle:
                pickle.dump(self.used, handle, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:
            return  # a read-only cache folder, a full disk: the next run parses again, nothing is lost
