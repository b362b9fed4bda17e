"""Write a file whole or not at all: a temporary file in the same directory, then a rename."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644


def write_atomically(path: Path, data: bytes, mode: int = PUBLIC) -> None:
    """Replace `path` with `data`; a reader sees the old file or the new one, never a part.

    The file is created with `mode` from the start (a private key is never readable by
    others, not even for a moment).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
