"""Shared, computed-once measurements for the trained-model properties (issue 8).

Pytest-xdist runs a session fixture once per worker; the measurements here take seconds, so each is
computed by whichever worker asks first, saved under the pytest cache folder (the system temporary
folder when the cache plugin is off), and read back by every other worker and by later runs. A file
lock serialises the workers. The file name carries a hash of every source the result depends on
(transformer/*.py, this module, the asking test module) and of the torch version, so a change to the
model (a mutant included) always recomputes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
_MEMO: dict[str, object] = {}


def offline() -> None:
    """Forbid every Hugging Face download; the model is read from the installed package."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _source_hash(name: str, sources: tuple[Path, ...]) -> str:
    digest = hashlib.sha256(f"{name}|torch {torch.__version__}".encode())
    for path in sorted({*ROOT.joinpath("transformer").glob("*.py"), Path(__file__), *sources}):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:20]


def _cache_folder(config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("trained-models"))
    folder = Path(tempfile.gettempdir()) / "transformer-faq-trained-models"
    folder.mkdir(exist_ok=True)
    return folder


def computed_once(config, name: str, compute: Callable[[], dict], *, sources: tuple[Path, ...] = ()) -> dict:
    """compute() once per source hash across workers and runs; the result must be torch.save-able
    with weights_only loading (dicts, lists, numbers, strings, tensors)."""
    key = f"{name}-{_source_hash(name, sources)}"
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
