"""The model configs a worker served before, newest first: what ``rollback`` can go back to.

Each successful swap pushes the spec it replaced; a successful rollback removes the entry it
restored (and the swap pushes the spec it left, so rolling back twice returns). At most
``keep`` entries are kept. With a directory (``worker.backup_dir``) every entry is a JSON file
``NNNNNN.json`` there, read back at start, so the history survives a restart; without one it
lives in memory. Methods do file I/O: call them off the event loop.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from switchgear.errors import NotFound
from switchgear.settings.worker import ModelSpec


@dataclass(frozen=True, slots=True)
class Backup:
    id: str
    spec: ModelSpec
    saved_at: float

    def to_dict(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "id": self.id,
            "name": self.spec.served_name(),
            "model_name_or_path": self.spec.model_name_or_path,
            "quantization": self.spec.quantization,
            "saved_at": self.saved_at,
            "spec": self.spec.model_dump(),
        }


class ModelHistory:
    def __init__(self, directory: str | Path | None, keep: int) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.keep = keep
        self._entries: list[Backup] = []  # newest first
        self._seq = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            for f in sorted(self.directory.glob("*.json"), reverse=True):
                try:
                    data = json.loads(f.read_text(encoding="utf-8"))
                    spec = ModelSpec.model_validate(data["spec"])
                    self._entries.append(Backup(f.stem, spec, float(data["saved_at"])))
                    self._seq = max(self._seq, int(f.stem))
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # an unreadable entry is skipped, not fatal
            self._prune()

    def entries(self) -> list[Backup]:
        return list(self._entries)

    def push(self, spec: ModelSpec) -> Backup:
        for old in [b for b in self._entries if b.spec == spec]:
            self._remove(old)
        self._seq += 1
        backup = Backup(f"{self._seq:06d}", spec, time.time())
        if self.directory is not None:
            path = self.directory / f"{backup.id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"spec": spec.model_dump(), "saved_at": backup.saved_at}, indent=1),
                encoding="utf-8",
            )
            tmp.replace(path)
        self._entries.insert(0, backup)
        self._prune()
        return backup

    def find(self, ref: int | str | None) -> tuple[int, Backup]:
        """By index (0 is the newest), id, served name or path; the newest match wins."""
        if not self._entries:
            raise NotFound("there is no previous model to roll back to", code="no_backup")
        if ref is None:
            ref = 0
        if isinstance(ref, int):
            if not 0 <= ref < len(self._entries):
                raise NotFound(
                    f"backup index {ref} does not exist (0..{len(self._entries) - 1})",
                    param="target",
                    code="no_backup",
                )
            return ref, self._entries[ref]
        for i, b in enumerate(self._entries):
            if ref in (b.id, b.spec.served_name(), b.spec.model_name_or_path):
                return i, b
        raise NotFound(f"no backup is named {ref!r}", param="target", code="no_backup")

    def remove(self, backup: Backup) -> None:
        self._remove(backup)

    def _remove(self, backup: Backup) -> None:
        self._entries = [b for b in self._entries if b.id != backup.id]
        if self.directory is not None:
            (self.directory / f"{backup.id}.json").unlink(missing_ok=True)

    def _prune(self) -> None:
        for old in self._entries[self.keep :]:
            self._remove(old)
