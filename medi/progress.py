"""Build progress on stderr: per source, the running stage, rows read and rows per second.

On a terminal a live bar; otherwise (CI, a log file) one line per finished source and a heartbeat line at
least every ``HEARTBEAT`` seconds, so a long build is never silent.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

HEARTBEAT = 10.0


class BuildProgress:
    def __init__(self, console: Console, total: int, heartbeat: float = HEARTBEAT):
        self.console, self.total, self.heartbeat = console, total, heartbeat
        self.done = 0
        self.started = time.monotonic()
        self._running: dict[str, str] = {}  # source -> "stage · rows read (rate)"
        self._lock = threading.Lock()
        self._last_line = self.started
        self._stop = threading.Event()
        self._bar: Progress | None = None
        self._task = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BuildProgress:
        if self.console.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._bar = Progress(*columns, console=self.console, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("sources", total=self.total)
        else:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._bar:
            self._bar.__exit__(*exc)

    def update(
        self,
        source: str,
        stage: str,
        rows: int | None = None,
        seconds: float | None = None,
        *,
        worker: int | None = None,
    ) -> None:
        """A stage of ``source`` started, or reports ``rows`` read after ``seconds``; ``worker``: the pid of the
        worker process that reports it (None: this process)."""
        text = stage
        if rows is not None:
            rate = f", {rows / seconds:,.0f} rows/s" if seconds else ""
            text = f"{stage} {rows:,} rows{rate}"
        with self._lock:
            self._running[source] = text
        if self._bar:
            self._bar.update(self._task, description=f"{source} · {text}")

    def finished(self, source: str, line: str) -> None:
        """``source`` is done; ``line`` says what it kept (printed when not on a terminal)."""
        with self._lock:
            self._running.pop(source, None)
            self.done += 1
        if self._bar:
            self._bar.advance(self._task)
        else:
            self._print(f"[{self.done}/{self.total}] {source}: {line}")

    def _print(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        self._last_line = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            if time.monotonic() - self._last_line < self.heartbeat:
                continue
            with self._lock:
                running = "; ".join(f"{s} · {t}" for s, t in self._running.items()) or "writing the release"
            elapsed = time.monotonic() - self.started
            self._print(f"… {self.done}/{self.total} sources done, {elapsed:.0f} s: {running}")
