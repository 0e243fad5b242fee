"""Adapter storage behind a small interface; the local-directory backend is the default.

Each version lives in its own folder, in PEFT's layout wherever PEFT can express the method:

    <root>/<key>/v<version>/
        adapter_config.json          PEFT's config (absent where PEFT cannot express the method)
        adapter_model.safetensors    the method's tensors, named as PEFT names them
        head.safetensors             the user's classification head: weight [labels, hidden], bias [labels]
        localize.json                method, options, labels, base model, training arguments, metrics

A version is written to a temporary folder and renamed into place, so a reader never sees half an adapter.
Callers name adapters by ``(key, version)``; a client never sends a path.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from localize.adapters import make_method
from localize.base_model import BaseDims
from localize.engine import AdapterWeights
from localize.errors import AdapterError, NotFoundError

FORMAT_VERSION = 1
META_FILE = "localize.json"
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


@dataclass
class StoredAdapter:
    key: str
    version: int
    files: dict[str, str]  # file name -> sha256
    nbytes: int


class AdapterStore(ABC):
    @abstractmethod
    def save(self, key: str, version: int, weights: AdapterWeights, extra: dict[str, Any] | None = None) -> StoredAdapter:
        """Writes a new version atomically; an existing version is never overwritten."""

    @abstractmethod
    def load(self, key: str, version: int, *, expected_hashes: dict[str, str] | None = None) -> AdapterWeights:
        """Reads a version; with ``expected_hashes`` every file is checked first."""

    @abstractmethod
    def delete(self, key: str, version: int) -> None: ...

    @abstractmethod
    def exists(self, key: str, version: int) -> bool: ...


def _check_key(key: str) -> str:
    if not _KEY_PATTERN.match(key) or {".", ".."} & set(key.split("/")):
        raise ValueError(f"adapter key {key!r} may hold only letters, digits, '_', '-', '.' and '/', "
                         "with no '.' or '..' segment")
    return key


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class LocalAdapterStore(AdapterStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str, version: int) -> Path:
        return self.root / _check_key(key) / f"v{int(version)}"

    def exists(self, key: str, version: int) -> bool:
        return (self.path(key, version) / META_FILE).is_file()

    def save(self, key, version, weights, extra=None):
        final = self.path(key, version)
        if final.exists():
            raise AdapterError(f"adapter {key!r} version {version} already exists; versions are immutable")
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            method = weights.method
            if weights.params:
                save_file({k: v.detach().cpu().contiguous() for k, v in weights.params.items()},
                          staging / "adapter_model.safetensors", metadata={"format": "pt"})
            peft_config = method.peft_config()
            if peft_config is not None:
                peft_config.base_model_name_or_path = weights.base_model_id
                peft_config.save_pretrained(str(staging))
            save_file({k: v.detach().cpu().contiguous() for k, v in weights.head.items()}, staging / "head.safetensors")
            meta = {
                "format_version": FORMAT_VERSION,
                "method": method.name,
                "method_options": method.config.to_dict(),
                "labels": weights.labels,
                "base_model_id": weights.base_model_id,
                "dims": vars(method.dims),
                "version": version,
                **(extra or {}),
            }
            meta["tensor_files"] = sorted(f.name for f in staging.iterdir() if f.suffix == ".safetensors")
            (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            for file in staging.iterdir():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
            hashes = {file.name: _sha256(file) for file in sorted(staging.iterdir())}
            nbytes = sum(file.stat().st_size for file in staging.iterdir())
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return StoredAdapter(key=key, version=version, files=hashes, nbytes=nbytes)

    def load(self, key, version, *, expected_hashes=None):
        folder = self.path(key, version)
        if not (folder / META_FILE).is_file():
            raise NotFoundError(f"adapter {key!r} version {version} is not in the store at {folder.name}")
        if expected_hashes:
            problems = []
            for name, digest in expected_hashes.items():
                file = folder / name
                if not file.is_file():
                    problems.append(f"{name} is missing")
                elif _sha256(file) != digest:
                    problems.append(f"{name} does not match its recorded sha256")
            if problems:
                raise AdapterError(f"adapter {key!r} version {version} is corrupt: " + "; ".join(problems))
        try:
            meta = json.loads((folder / META_FILE).read_text())
            dims = BaseDims(**meta["dims"])
            method = make_method(meta["method"], meta["method_options"], dims)
            missing = [name for name in meta.get("tensor_files", []) if not (folder / name).is_file()]
            if missing:
                raise AdapterError(f"adapter {key!r} version {version} is incomplete: {missing} missing")
            weights_file = folder / "adapter_model.safetensors"
            params = load_file(weights_file) if weights_file.is_file() else {}
            head = load_file(folder / "head.safetensors")
        except (OSError, KeyError, ValueError, json.JSONDecodeError, SafetensorError) as error:
            raise AdapterError(f"adapter {key!r} version {version} cannot be read: {error}") from error
        return AdapterWeights(
            method=method,
            params=params,
            head=head,
            labels=list(meta["labels"]),
            base_model_id=meta["base_model_id"],
            version=version,
            meta=meta,
        )

    def delete(self, key, version):
        folder = self.path(key, version)
        if folder.exists():
            # Rename first so a concurrent reader sees the version either whole or gone.
            trash = folder.parent / f".del-{folder.name}-{uuid.uuid4().hex}"
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)


def open_store(location: str | Path) -> AdapterStore:
    return LocalAdapterStore(location)
