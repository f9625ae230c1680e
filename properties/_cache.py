"""Results computed once and shared by every pytest-xdist worker and by later runs.

A session fixture runs once per worker, and some measurements take seconds. ``computed_once`` lets the
first worker that asks compute the result and save it under the pytest cache folder (the system
temporary folder when the cache plugin is off); the others, and later runs, read it back. A file lock
serialises the workers. The file name carries a hash of every source the result depends on
(transformer/*.py, this module, the module that defines ``compute``, any ``sources`` named) and of the
torch version, so a change to the model, a mutant included, always recomputes.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
_MEMO: dict[str, object] = {}


def _source_hash(name: str, sources: tuple[Path, ...], extra: str) -> str:
    digest = hashlib.sha256(f"{name}|torch {torch.__version__}|{extra}".encode())
    for path in sorted({*ROOT.joinpath("transformer").glob("*.py"), Path(__file__), *map(Path, sources)}):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:20]


def _cache_folder(config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("trained-models"))
    folder = Path(tempfile.gettempdir()) / "transformer-faq-trained-models"
    folder.mkdir(exist_ok=True)
    return folder


def computed_once(config, name: str, compute: Callable[[], dict], *, sources: tuple[Path, ...] = (),
                  extra: str = "") -> dict:
    """compute() once per source hash across workers and runs; the result must be torch.save-able
    with weights_only loading (dicts, lists, numbers, strings, tensors). ``extra`` names any other input
    (a weights file's identity)."""
    defined_in = inspect.getsourcefile(compute)
    sources = (*sources, *([Path(defined_in)] if defined_in else []))
    key = f"{name}-{_source_hash(name, sources, extra)}"
    if key in _MEMO:
        return _MEMO[key]
    path = _cache_folder(config) / f"{key}.pt"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists():
            result = torch.load(path, weights_only=True)
        else:
            result = compute()
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(result, partial)
            partial.replace(path)
    _MEMO[key] = result
    return result
