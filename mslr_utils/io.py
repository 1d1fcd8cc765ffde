"""Atomic file writes: a reader never sees a half-written result."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and move the finished file onto ``path``.

    The temporary file lives in the target folder so that ``os.replace`` is an atomic
    rename on the same file system. On any error the temporary file is removed and the
    previous content of ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    # mkstemp creates the file as 0600; give it the mode an ordinary open() would (umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


class ResultFolder:
    """Write a run's outputs into a staging folder and swap it in only when the run finishes.

    ``path`` is ``<target>.partial``, created by the first file written into it, until
    ``commit()`` replaces ``target`` with it. A run that fails midway leaves the previous
    results in ``target`` untouched and its partial outputs in ``<target>.partial``. A run
    that fails before writing anything leaves no folder.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.path = self.target.with_name(self.target.name + ".partial")
        if self.path.exists():
            shutil.rmtree(self.path)

    def commit(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        previous = self.target.with_name(self.target.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        if self.target.exists():
            os.replace(self.target, previous)
        os.replace(self.path, self.target)
        if previous.exists():
            shutil.rmtree(previous)
        return self.target
