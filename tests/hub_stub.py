"""A small stand-in for the Hugging Face Hub: a real HTTP server on 127.0.0.1 for the publish tests.

It answers the endpoints ``huggingface_hub`` (2.x, with ``HF_HUB_DISABLE_XET=1``) and ``datasets`` call to create a
dataset repo, commit files (regular ones inline in the NDJSON commit, ``*.parquet`` through the LFS batch API and a
PUT, as the real Hub's ``.gitattributes`` decides), list and inspect them (``tree``, ``paths-info``, repo info,
``refs``), tag a commit and download files (``resolve`` with HEAD, ETag/X-Repo-Commit headers and byte ranges).
The shapes follow huggingface_hub's ``hf_api.py``, ``_commit_api.py``, ``lfs.py`` and ``file_download.py``.

State lives in memory. Every request is logged (``HubStub.requests``) so a test can tell what a client wrote.
Writes need ``Authorization: Bearer <token>``; a wrong token is a 401 with the real Hub's error message.
``HubStub.fail_next(method, pattern, status)`` makes the next matching request fail, to test error handling.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".gz")
GITATTRIBUTES = b"".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n".encode() for suffix in LFS_SUFFIXES)
EPOCH = "2026-01-01T00:00:00.000Z"
WRITES = ("create", "preupload", "lfs-batch", "lfs-put", "lfs-verify", "commit", "tag")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def pointer(self) -> bytes:
        return lfs_pointer(self.sha256, len(self.content))

    @property
    def oid(self) -> str:
        """The git blob id: of the LFS pointer for LFS files, of the content otherwise (as on the Hub)."""
        return git_blob_sha1(self.pointer if self.lfs else self.content)

    def entry(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.oid, "size": len(self.content), "path": path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.content), "pointerSize": len(self.pointer)}
        return entry


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)
    upload_keys: dict[str, str] = field(default_factory=dict)  # one-off key of each presigned LFS upload URL

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and re.fullmatch(r"[0-9a-f]{40}", revision):
            oid = revision
        return self.commits.get(oid) if oid else None

    def add_commit(self, parent: str | None, title: str, files: dict[str, Blob], branch: str = "main") -> Commit:
        digest = hashlib.sha1(f"{parent}\n{title}\n".encode())
        for path in sorted(files):
            digest.update(f"{path} {files[path].oid}\n".encode())
        commit = Commit(digest.hexdigest(), parent, title, dict(files))
        self.commits[commit.oid] = commit
        self.branches[branch] = commit.oid
        return commit


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    kind: str  # which endpoint answered: create, preupload, commit, tree, resolve, ... or "unknown"
    status: int
    detail: tuple[str, ...] = ()  # commit: the paths it adds or deletes; lfs-batch: the object ids asked for


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubStub:
    """``with HubStub(token) as hub:`` serves on ``hub.url`` (127.0.0.1, a free port) until the block ends."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Logged] = []
        self.lock = threading.RLock()
        self._failures: list[list] = []  # [method, path pattern, matches to let through, error]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-stub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # --- what tests look at ---
    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, Blob]:
        return self.repo(repo_id, repo_type).resolve(revision).files

    def writes(self, since: int = 0) -> list[Logged]:
        """Requests after ``since`` that could change the Hub (or upload bytes)."""
        return [r for r in self.requests[since:] if r.kind in WRITES]

    def fail_next(
        self, method: str, pattern: str, status: int, *, after: int = 0, code: str | None = None, message: str = ""
    ) -> None:
        """The ``after+1``-th next ``method`` request whose path matches ``pattern`` answers ``status`` (once)."""
        self._failures.append([method, re.compile(pattern), after, HubError(status, message or "injected", code)])

    def _take_failure(self, method: str, path: str) -> HubError | None:
        for failure in self._failures:
            if failure[0] == method and failure[1].search(path):
                if failure[2] > 0:
                    failure[2] -= 1
                    return None
                self._failures.remove(failure)
                return failure[3]
        return None

    # --- auth ---
    def check_write(self, headers) -> None:
        given = headers.get("Authorization", "")
        if not given:
            raise HubError(401, "You must be authenticated to access this resource")
        if given != f"Bearer {self.token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def check_read(self, repo: Repo, headers) -> None:
        if repo.private and headers.get("Authorization", "") != f"Bearer {self.token}":
            raise HubError(401, "Repository not found", "RepoNotFound")

    def find(self, repo_type: str, repo_id: str, headers) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        self.check_read(repo, headers)
        return repo

    @staticmethod
    def revision(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(unquote(revision))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit


PREFIX_TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
API = rf"^/api/(?P<type>datasets|models|spaces)/{REPO}"


def _handler_for(hub: HubStub):
    routes = [
        ("POST", r"^/api/repos/create$", "create", _create_repo),
        ("POST", r"^/api/validate-yaml$", "validate-yaml", _validate_yaml),
        ("GET", r"^/api/whoami-v2$", "whoami", _whoami),
        ("POST", API + r"/preupload/(?P<rev>[^/]+)$", "preupload", _preupload),
        ("POST", API + r"/commit/(?P<rev>[^/]+)$", "commit", _commit),
        ("POST", API + r"/paths-info/(?P<rev>[^/]+)$", "paths-info", _paths_info),
        ("GET", API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", "tree", _tree),
        ("POST", API + r"/tag/(?P<rev>[^/]+)$", "tag", _tag),
        ("GET", API + r"/refs$", "refs", _refs),
        ("GET", API + r"(?:/revision/(?P<rev>[^/]+))?$", "info", _info),
        (
            "POST",
            r"^/(?P<prefix>datasets/|spaces/)?" + REPO + r"\.git/info/lfs/objects/batch$",
            "lfs-batch",
            _lfs_batch,
        ),
        ("PUT", r"^/__lfs/(?P<key>[0-9a-f]+)/(?P<oid>[0-9a-f]{64})$", "lfs-put", _lfs_put),
        ("POST", r"^/__lfs-verify/(?P<type>\w+)/" + REPO + "$", "lfs-verify", _lfs_verify),
        (
            "GET",
            r"^/(?P<prefix>datasets/|spaces/)?" + REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
            "resolve",
            _resolve,
        ),
        (
            "HEAD",
            r"^/(?P<prefix>datasets/|spaces/)?" + REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$",
            "resolve",
            _resolve,
        ),
    ]
    compiled = [(method, re.compile(pattern), kind, fn) for method, pattern, kind, fn in routes]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # the request log is hub.requests
            pass

        def do_GET(self):
            self._dispatch("GET")

        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_POST(self):
            self._dispatch("POST")

        def do_PUT(self):
            self._dispatch("PUT")

        def _dispatch(self, method: str) -> None:
            split = urlsplit(self.path)
            path, query = split.path, parse_qs(split.query)
            body = self._body()
            kind, status = "unknown", 404
            self.detail: tuple[str, ...] = ()
            try:
                for route_method, pattern, route_kind, fn in compiled:
                    match = pattern.match(path)
                    if route_method == method and match:
                        kind = route_kind
                        with hub.lock:
                            if failure := hub._take_failure(method, path):
                                raise failure
                            groups = match.groupdict()
                            if "type" in groups:
                                groups["type"] = PREFIX_TYPES.get(groups["type"], groups["type"])
                            result = fn(hub, self, groups, query, body)
                        status = self._send(*result, head=method == "HEAD")
                        break
                else:
                    raise HubError(404, f"no such endpoint in the Hub stub: {method} {path}")
            except HubError as error:
                status = error.status
                headers = {"X-Error-Message": error.message}
                if error.code:
                    headers["X-Error-Code"] = error.code
                self._send(error.status, {"error": error.message}, headers, head=method == "HEAD")
            finally:
                hub.requests.append(Logged(method, path, kind, status, self.detail))

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    chunk = self.rfile.read(size)
                    self.rfile.readline()
                    if size == 0:
                        return b"".join(chunks)
                    chunks.append(chunk)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload, headers: dict | None = None, head: bool = False) -> int:
            if isinstance(payload, bytes | bytearray):
                data, content_type = bytes(payload), "application/octet-stream"
            else:
                data, content_type = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(data)
            return status

    return Handler


# --- endpoints: each returns (status, JSON-able payload or bytes[, headers]) ---


def _create_repo(hub: HubStub, request, groups, query, body):
    hub.check_write(request.headers)
    payload = json.loads(body)
    repo_type = payload.get("type") or "model"
    repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    url = f"{hub.url}/{prefix}{repo_id}"
    if (repo_type, repo_id) in hub.repos:
        raise HubError(409, "You already created this repo")
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    repo = Repo(repo_id, repo_type, private)
    repo.add_commit(None, "initial commit", {".gitattributes": Blob(GITATTRIBUTES, lfs=False)})
    hub.repos[(repo_type, repo_id)] = repo
    return 200, {"url": url, "name": repo_id, "id": repo_id}


def _validate_yaml(hub: HubStub, request, groups, query, body):
    content = json.loads(body)["content"]
    match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
    if not match:
        return 200, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return 400, {"errors": [{"message": f"invalid YAML: {exc}"}]}
    errors = []
    for index, config in enumerate(metadata.get("configs") or []):
        if not isinstance(config, dict) or "config_name" not in config or "data_files" not in config:
            errors.append({"message": f'"configs[{index}]" needs config_name and data_files'})
    return (400, {"errors": errors}) if errors else (200, {"warnings": []})


def _whoami(hub: HubStub, request, groups, query, body):
    hub.check_write(request.headers)
    return 200, {"type": "user", "name": "medi-tester", "orgs": [], "auth": {"accessToken": {"role": "write"}}}


def _preupload(hub: HubStub, request, groups, query, body):
    hub.check_write(request.headers)
    repo = hub.find(groups["type"], groups["repo"], request.headers)
    commit = hub.revision(repo, groups["rev"])
    files = []
    for item in json.loads(body)["files"]:
        lfs = item["path"].endswith(LFS_SUFFIXES)
        existing = commit.files.get(item["path"])
        oid = None
        if existing is not None:
            oid = existing.sha256 if existing.lfs else existing.oid
        files.append(
            {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
        )
    return 200, {"files": files, "commitOid": commit.oid}


def _lfs_batch(hub: HubStub, request, groups, query, body):
    hub.check_write(request.headers)
    repo_type = (groups["prefix"] or "models/").rstrip("/")
    repo = hub.find(PREFIX_TYPES[repo_type], groups["repo"], request.headers)
    objects = []
    request.detail = tuple(item["oid"] for item in json.loads(body)["objects"])
    for item in json.loads(body)["objects"]:
        answer = {"oid": item["oid"], "size": item["size"], "authenticated": True}
        if item["oid"] not in repo.lfs_objects:
            key = secrets.token_hex(8)
            repo.upload_keys[item["oid"]] = key
            answer["actions"] = {
                "upload": {"href": f"{hub.url}/__lfs/{key}/{item['oid']}"},
                "verify": {"href": f"{hub.url}/__lfs-verify/{repo.repo_type}/{repo.repo_id}"},
            }
        objects.append(answer)
    return 200, {"transfer": "basic", "objects": objects}


def _lfs_put(hub: HubStub, request, groups, query, body):
    for repo in hub.repos.values():
        if repo.upload_keys.get(groups["oid"]) == groups["key"]:
            if hashlib.sha256(body).hexdigest() != groups["oid"]:
                raise HubError(400, "uploaded content does not match its sha256")
            repo.lfs_objects[groups["oid"]] = body
            del repo.upload_keys[groups["oid"]]
            return 200, b""
    raise HubError(403, "upload URL unknown or already used")


def _lfs_verify(hub: HubStub, request, groups, query, body):
    hub.check_write(request.headers)
    repo = hub.find(groups["type"], groups["repo"], request.headers)
    item = json.loads(body)
    stored = repo.lfs_objects.get(item["oid"])
    if stored is None or len(stored) != item["size"]:
        raise HubError(404, f"LFS object {item['oid']} was not uploaded")
    return 200, {"success": True}


def _commit(hub: HubStub, request, groups, query, body):
    hub.check_write(request.headers)
    repo = hub.find(groups["type"], groups["repo"], request.headers)
    branch = unquote(groups["rev"])
    if "create_pr" in query:
        raise HubError(400, "the Hub stub does not open pull requests")
    if branch not in repo.branches:
        raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
    head = repo.commits[repo.branches[branch]]
    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    header = lines[0]
    if header.get("key") != "header":
        raise HubError(400, "the first NDJSON line must be the commit header")
    parent = header["value"].get("parentCommit")
    if parent and parent != head.oid:
        raise HubError(412, "A commit has happened since. Please refresh and try again.")
    files = dict(head.files)
    request.detail = tuple(line["value"]["path"] for line in lines[1:])
    for line in lines[1:]:
        value = line["value"]
        if line["key"] == "file":
            files[value["path"]] = Blob(base64.b64decode(value["content"]), lfs=False)
        elif line["key"] == "lfsFile":
            if value["oid"] not in repo.lfs_objects:
                raise HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
            files[value["path"]] = Blob(repo.lfs_objects[value["oid"]], lfs=True)
        elif line["key"] == "deletedFile":
            files.pop(value["path"], None)
        elif line["key"] == "deletedFolder":
            folder = value["path"].rstrip("/") + "/"
            files = {path: blob for path, blob in files.items() if not path.startswith(folder)}
        else:
            raise HubError(400, f"unknown commit operation {line['key']!r}")
    commit = repo.add_commit(head.oid, header["value"]["summary"], files, branch)
    prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
    return 200, {
        "success": True,
        "commitOid": commit.oid,
        "commitUrl": f"{hub.url}/{prefix}{repo.repo_id}/commit/{commit.oid}",
        "pullRequestUrl": None,
    }


def _entries(commit: Commit, folder: str, recursive: bool) -> list[dict]:
    """Files and folders under ``folder`` ("" = root), as the tree endpoint lists them."""
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    entries: dict[str, dict] = {}
    for path in sorted(commit.files):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            sub = prefix + "/".join(parts[:depth])
            if (recursive or depth == 1) and sub not in entries:
                entries[sub] = {"type": "directory", "oid": hashlib.sha1(sub.encode()).hexdigest(), "path": sub}
        if recursive or len(parts) == 1:
            entries[path] = commit.files[path].entry(path)
    return list(entries.values())


def _with_last_commit(entries: list[dict], commit: Commit) -> list[dict]:
    last = {"id": commit.oid, "title": commit.title, "date": EPOCH}
    return [{**entry, "lastCommit": last} for entry in entries]


def _tree(hub: HubStub, request, groups, query, body):
    repo = hub.find(groups["type"], groups["repo"], request.headers)
    commit = hub.revision(repo, groups["rev"])
    folder = unquote(groups["path"] or "")
    recursive = query.get("recursive", ["false"])[0].lower() == "true"
    if folder and not any(path.startswith(folder.rstrip("/") + "/") for path in commit.files):
        raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
    entries = _entries(commit, folder, recursive)
    if query.get("expand", ["false"])[0].lower() == "true":
        entries = _with_last_commit(entries, commit)
    return 200, entries


def _paths_info(hub: HubStub, request, groups, query, body):
    repo = hub.find(groups["type"], groups["repo"], request.headers)
    commit = hub.revision(repo, groups["rev"])
    form = parse_qs(body.decode())
    wanted = [path.strip("/") for path in form.get("paths", [])]
    everything = {entry["path"]: entry for entry in _entries(commit, "", recursive=True)}
    found = [everything[path] for path in wanted if path in everything]
    if form.get("expand", ["False"])[0].lower() == "true":
        found = _with_last_commit(found, commit)
    return 200, found


def _tag(hub: HubStub, request, groups, query, body):
    hub.check_write(request.headers)
    repo = hub.find(groups["type"], groups["repo"], request.headers)
    commit = hub.revision(repo, groups["rev"])
    tag = json.loads(body)["tag"]
    if tag in repo.tags or tag in repo.branches:
        raise HubError(409, f"Tag {tag} already exists")
    repo.tags[tag] = commit.oid
    return 200, {}


def _refs(hub: HubStub, request, groups, query, body):
    repo = hub.find(groups["type"], groups["repo"], request.headers)

    def refs(kind: str, names: dict[str, str]) -> list[dict]:
        return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid} for n, oid in sorted(names.items())]

    return 200, {"branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags), "converts": []}


def _card_data(commit: Commit) -> dict | None:
    readme = commit.files.get("README.md")
    match = readme and re.match(rb"^---\n(.*?)\n---\n", readme.content, re.DOTALL)
    return yaml.safe_load(match.group(1)) if match else None


def _info(hub: HubStub, request, groups, query, body):
    repo = hub.find(groups["type"], groups["repo"], request.headers)
    commit = hub.revision(repo, groups["rev"] or "main")
    blobs = "blobs" in query
    siblings = []
    for path, blob in sorted(commit.files.items()):
        sibling = {"rfilename": path}
        if blobs:
            entry = blob.entry(path)
            sibling.update(size=entry["size"], blobId=entry["oid"])
            if blob.lfs:
                sibling["lfs"] = {"sha256": blob.sha256, "size": len(blob.content), "pointerSize": len(blob.pointer)}
        siblings.append(sibling)
    return 200, {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": commit.oid,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "createdAt": EPOCH,
        "lastModified": EPOCH,
        "cardData": _card_data(commit),
        "siblings": siblings,
    }


def _resolve(hub: HubStub, request, groups, query, body):
    repo_type = PREFIX_TYPES[(groups["prefix"] or "models/").rstrip("/")]
    repo = hub.find(repo_type, groups["repo"], request.headers)
    commit = hub.revision(repo, groups["rev"])
    path = unquote(groups["path"])
    blob = commit.files.get(path)
    if blob is None:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
    etag = blob.sha256 if blob.lfs else blob.oid
    headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
    if blob.lfs:
        headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(blob.content))})
    content, status = blob.content, 200
    if ranged := re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range", "")):
        size = len(content)
        start, end = ranged.groups()
        first = int(start) if start else max(size - int(end), 0)
        last = min(int(end), size - 1) if start and end else size - 1
        if first >= size:
            raise HubError(416, "Requested range not satisfiable")
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        content, status = content[first : last + 1], 206
    return status, content, headers
