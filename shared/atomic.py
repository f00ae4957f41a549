"""Atomic file writes, one definition for the whole project: a temporary file beside the target,
renamed onto it on success and removed on any error, so an interrupted write never leaves half a
file under the real name (oracles, parts, pools, tables asked for with ``--out``, reports).

Temporary files are ``.<name>.[<tag>.]<random>.tmp`` with the usual permissions (``0666 & ~umask``;
``tempfile.mkstemp`` gives 0600, and a file renamed into place would then be unreadable by
colleagues sharing a cache or a results folder).  ``tag`` lets a writer name its owner (the sweep
tags them ``host-pid`` so a rerun can delete those left by a process that died)."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_beside(path: str | os.PathLike, tag: str = "") -> Path:
    """Create an empty temporary file ``.<name>.[<tag>.]<random>.tmp`` in ``path``'s folder."""
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{tag + '.' if tag else ''}{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a unique temporary file beside {str(path)!r}")


@contextmanager
def atomic_path(path: str | os.PathLike, tag: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (its folder made if missing); on success rename it onto
    ``path``, on any error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, tag)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


__all__ = ["temp_beside", "atomic_path", "write_text"]
