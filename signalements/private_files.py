"""Writing a secret to disk (a password, a key, a hashed client list): its folder readable by its owner only, the
file made 0600 before a byte is written, and replaced atomically, so a reader never sees half a secret and nobody
else ever sees it at all. Every secret file of the project is written here."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
    os.chmod(temporary, 0o600)  # an older temporary file may have been made with another mode
    temporary.replace(path)
