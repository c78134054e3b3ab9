"""Atomic writes: a reader, or a run killed at any instant, sees the old file or folder or the new one,
never a half-written one; and ``metrics.jsonl``, one flushed JSON row per line.

* :func:`write_atomically` replaces a small text file (``config.json``, ``summary.json``): the text goes
  to a hidden temporary sibling, is flushed to disk (``fsync``), then renamed over the target.
* :func:`replace_folder` builds a folder (a Hugging Face checkpoint, a resumable training state) in a
  hidden temporary sibling ``.NAME.tmp-*`` and puts it in place by renames only, so the target is either
  the previous complete folder or the new complete one.
* :func:`remove_folder` renames a folder away (hidden) before deleting it, so no half-deleted folder is
  ever visible under its name.
* :class:`MetricsLog` appends rows to ``metrics.jsonl``, flushed after each.

A full or unwritable disk is a one-line :class:`WriteError` (the temporary file or folder is removed,
what was there before stays).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


class WriteError(ValueError):
    """A file or folder that cannot be written (disk full, not writable): one line."""


def write_atomically(path: str | Path, text: str) -> None:
    """Replace a small text file atomically (temporary sibling, then ``os.replace``); OSError ->
    :class:`WriteError` naming the file, and the old file stays as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        durable_write(tmp, text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None


class MetricsLog:
    """``metrics.jsonl``: one JSON row per line, flushed after each; a failed write (disk full, not
    writable) is a one-line :class:`WriteError` (the rows and checkpoints already written stay)."""

    def __init__(self, path: str | Path, append: bool = False):
        self.path, self.mode, self.file = Path(path), "a" if append else "w", None

    def __enter__(self) -> MetricsLog:
        try:
            self.file = open(self.path, self.mode)
        except OSError as err:
            raise WriteError(f"cannot write {self.path}: {err.strerror or err}") from None
        return self

    def write(self, row: dict[str, Any]) -> None:
        try:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        except OSError as err:
            raise WriteError(f"cannot write {self.path}: {err.strerror or err}") from None

    def __exit__(self, kind, value, tb) -> None:
        try:
            self.file.close()
        except OSError as err:
            if kind is None:
                raise WriteError(f"cannot write {self.path}: {err.strerror or err}") from None


def write_errors() -> tuple[type[BaseException], ...]:
    """What a full or unwritable disk raises: OSError, and safetensors' own error (it does not subclass
    OSError: on a full tmpfs it raised ``SafetensorError: ... No space left on device (os error 28)``)."""
    from safetensors import SafetensorError

    return (OSError, SafetensorError)


def reason(err: BaseException) -> str:
    """The one-line reason of a write error (``No space left on device``, ...)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return "No space left on device" if "os error 28" in text else text


def replace_folder(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a hidden temporary sibling folder, then put it at ``path`` by renames only
    (the previous ``path``, if any, is renamed away first and deleted after). On any error the temporary
    folder is removed and the error propagates; ``path`` is then as it was."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the final folder gets the usual permissions
        write(tmp)
        _fsync_dir(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "ckpt")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_folder(folder: Path) -> None:
    """Delete ``folder`` after renaming it to a hidden sibling (never visible half-deleted)."""
    hidden = folder.with_name(f".{folder.name}.del-{os.getpid()}")
    os.replace(folder, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def durable_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and ``fsync`` it (the caller renames it into place)."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["MetricsLog", "WriteError", "durable_write", "reason", "remove_folder", "replace_folder",
           "write_atomically", "write_errors"]
