"""Files the bridge keeps in its state folder: written atomically, owner-only, read without trusting them."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    """Replace `path` with `data` as JSON so that a crash leaves the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object stored at `path`, or None when there is no file.

    OSError when the file cannot be read; ValueError when it is not a JSON object in UTF-8
    (bytes that are not UTF-8 included: a broken file must never stop the bridge)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        # Its message would quote the file's bytes, and a token file holds secrets.
        raise ValueError("not UTF-8 text") from None
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply to be a settings file") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
