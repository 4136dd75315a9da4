"""What every cleaning stage reports: rows kept, dropped and changed by reason, with a few examples of each."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_EXAMPLES = 3


@dataclass
class StageReport:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=dict)

    def example(self, reason: str, **item) -> None:
        """Keep the first ``MAX_EXAMPLES`` items of each reason, for the manifest."""
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES:
            bucket.append(item)

    def summary(self) -> dict:
        return {
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "changed": dict(sorted(self.changed.items())),
        }
