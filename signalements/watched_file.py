"""A pydantic model kept in a private JSON file that services read again when it changes (the intake's clients,
the desk's officers): an operator's edit takes effect at the next request, with no restart and no reload signal."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

from signalements.private_files import write_private

M = TypeVar("M", bound=BaseModel)


def read_model(path: Path, model: type[M], empty: Callable[[], M]) -> M:
    """The file's content; ``empty()`` when there is no file."""
    if not path.exists():
        return empty()
    return model.model_validate_json(path.read_text(encoding="utf-8"))


def write_model(path: Path, content: BaseModel) -> None:
    """Replace the file atomically (a service may be reading it), readable by its owner only."""
    write_private(path, json.dumps(content.model_dump(mode="json"), indent=2) + "\n")


class WatchedModelFile(Generic[M]):
    """The file's content, read again when its modification time or size changes."""

    def __init__(self, path: Path, model: type[M], empty: Callable[[], M]) -> None:
        self.path, self._model, self._empty = path, model, empty
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._content = empty()

    def current(self) -> M:
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._content = read_model(self.path, self._model, self._empty) if stamp is not None else self._empty()
                self._stamp = stamp
            return self._content
