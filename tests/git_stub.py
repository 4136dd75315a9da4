"""A stand-in for GitHub's raw file host on 127.0.0.1 (medi reads ``MEDI_GIT_RAW_BASE``): a real HTTP server."""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path


class RawServer:
    """GitHub's raw host in miniature: serves ``root/<repo>/<revision>/<path>``, logs the paths asked for."""

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_request(self, code="-", size="-"):
                log.append(self.path)

            def log_message(self, format, *args):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, repo: str, revision: str, path: str, source: Path) -> Path:
        served = self.root / repo / revision / path
        served.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, served)
        return served

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
