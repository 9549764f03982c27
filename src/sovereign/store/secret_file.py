"""Create a small secret file (a key) exactly once, whole, even when processes race.

The content is written and synced to a private temporary file beside the target, which is then
hard-linked into place: the link either creates the complete file or fails because another
process already created it. A reader therefore never sees a missing or half-written key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def create_secret_file(path: Path, content: bytes) -> bool:
    """Write ``content`` to ``path`` (mode 600) unless it exists; True when this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(staging, path)
        except FileExistsError:
            return False
        return True
    finally:
        staging.unlink(missing_ok=True)
