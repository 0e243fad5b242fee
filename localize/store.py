"""Adapter storage behind a small interface: a local directory (the default) or any fsspec URL.

Each version lives under its own prefix, in PEFT's layout wherever PEFT can express the method:

    <root>/<key>/v<version>/
        adapter_config.json          PEFT's config (absent where PEFT cannot express the method)
        adapter_model.safetensors    the method's tensors, named as PEFT names them
        head.safetensors             the user's classification head: weight [labels, hidden], bias [labels]
        localize.json                the manifest: method, options, labels, base model, training arguments,
                                     metrics, and the sha256 of every other file

Versions are immutable and published atomically, so a reader never sees half an adapter:

- ``LocalAdapterStore`` writes a temporary folder and renames it into place.
- ``FsspecAdapterStore`` (``s3://bucket/prefix``, ``memory://``, ``file://``, any fsspec protocol) cannot rename on
  object stores, so the manifest is the commit point: the data files are written first and the manifest last, and
  a version exists only once its manifest does. Files left by a writer that died before its manifest are removed
  before the version number is written again.

The sha256 of every file (the manifest included) is recorded in the database and checked on each load; a missing
or altered file is a :class:`CorruptAdapterError` that names the version and the file. Callers name adapters by
``(key, version)``; a client never sends a path.

    AdapterStore                 the format: serialize, verify, parse, export (backends move bytes only)
    ├── LocalAdapterStore        a directory on this machine (the default)
    └── FsspecAdapterStore       any fsspec URL
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from localize.errors import AdapterError, ConfigurationError, CorruptAdapterError, NotFoundError
from localize.private_files import PRIVATE_FOLDER, open_private, private_folder

if TYPE_CHECKING:  # torch comes with the engine; it loads with the first adapter, so database-only commands start fast
    from localize.engine import AdapterWeights

FORMAT_VERSION = 1
META_FILE = "localize.json"
ENCODER_FOLDER = "encoder"  # where an export puts the encoder a head reads
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
_URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class StoredAdapter:
    key: str
    version: int
    files: dict[str, str]  # file name -> sha256
    nbytes: int


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_PATTERN.match(key) or {".", ".."} & set(key.split("/")):
        raise ValueError(f"adapter key {key!r} may hold only letters, digits, '_', '-', '.' and '/', "
                         "with no '.' or '..' segment")
    return key


def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"adapter version {version!r} must be an integer >= 1")
    return version


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(weights: AdapterWeights, version: int, extra: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Every file of one version, the manifest (which records the others' sha256) included."""
    from safetensors.torch import save as save_tensors

    method = weights.method
    files: dict[str, bytes] = {}
    if weights.params:
        files["adapter_model.safetensors"] = save_tensors(
            {k: v.detach().cpu().contiguous() for k, v in weights.params.items()}, metadata={"format": "pt"}
        )
    peft_config = method.peft_config()
    if peft_config is not None:
        peft_config.base_model_name_or_path = weights.base_model_id
        with tempfile.TemporaryDirectory() as folder:  # PEFT writes its config only to a folder
            peft_config.save_pretrained(folder)
            for file in Path(folder).iterdir():
                files[file.name] = file.read_bytes()
    files["head.safetensors"] = save_tensors({k: v.detach().cpu().contiguous() for k, v in weights.head.items()})
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
    if weights.encoder is not None:  # a reference to the stored prior it reads: store key, version, file hashes
        reference = weights.meta.get("encoder")
        if not reference:
            raise AdapterError("this adapter reads a shared encoder that is not a stored version; save the encoder "
                               "(the task prior) first")
        meta["encoder"] = reference
    meta["tensor_files"] = sorted(name for name in files if name.endswith(".safetensors"))
    meta["sha256"] = {name: sha256(data) for name, data in sorted(files.items())}
    files[META_FILE] = json.dumps(meta, indent=2, default=str).encode()
    return files


class AdapterStore(ABC):
    """Immutable adapter versions named by ``(key, version)``. This class owns the format and the integrity
    checks; a backend only publishes, reads and deletes bytes."""

    # -- what a backend implements --------------------------------------------------------------------------------
    @abstractmethod
    def location(self, key: str, version: int) -> str:
        """Where a version lives (a path or a URL), for messages and logs."""

    @abstractmethod
    def exists(self, key: str, version: int) -> bool:
        """Whether the version is published (its manifest is visible)."""

    @abstractmethod
    def _publish(self, key: str, version: int, files: dict[str, bytes]) -> None:
        """Writes every file of a new version so that readers see all of them or none. Raises AdapterError if
        the version already exists."""

    @abstractmethod
    def _read(self, key: str, version: int, name: str) -> bytes:
        """One file's bytes; FileNotFoundError if it is not there."""

    @abstractmethod
    def _remove(self, key: str, version: int) -> None:
        """Unpublishes the version first (so readers see it whole or gone), then removes its files."""

    # -- shared -----------------------------------------------------------------------------------------------------
    def save(self, key: str, version: int, weights: AdapterWeights, extra: dict[str, Any] | None = None) -> StoredAdapter:
        """Writes a new version atomically; an existing version is never overwritten."""
        _check_key(key)
        _check_version(version)
        files = serialize(weights, version, extra)
        self._publish(key, version, files)
        return StoredAdapter(key=key, version=version, files={name: sha256(data) for name, data in sorted(files.items())},
                             nbytes=sum(len(data) for data in files.values()))

    def delete(self, key: str, version: int) -> None:
        """Removes a version; deleting one that is not there does nothing."""
        _check_key(key)
        _check_version(version)
        self._remove(key, version)

    def read_files(self, key: str, version: int, *, expected_hashes: dict[str, str] | None = None) -> dict[str, bytes]:
        """Every file of a version, verified: against ``expected_hashes`` (the database's record) when given, else
        against the sha256 the manifest records. Every problem is collected into one AdapterError naming the
        version and each bad file."""
        _check_key(key)
        _check_version(version)
        where = f"adapter {key!r} version {version}"
        try:
            manifest = self._read(key, version, META_FILE)
        except FileNotFoundError:
            raise NotFoundError(f"{where} is not in the store ({META_FILE} is missing at "
                                f"{self.location(key, version)})") from None
        except OSError as error:
            raise AdapterError(f"{where} cannot be read from {self.location(key, version)}: {error}") from error
        expected = dict(expected_hashes or {})
        if not expected:
            try:
                expected = dict(json.loads(manifest).get("sha256", {}))
            except (ValueError, AttributeError) as error:
                raise AdapterError(f"{where} cannot be read: {META_FILE} is not valid JSON ({error})") from error
            try:  # older versions recorded no hashes: read the files the manifest lists
                names = json.loads(manifest).get("tensor_files", [])
            except (ValueError, AttributeError):
                names = []
            for name in names:
                expected.setdefault(name, "")
        files, problems = {META_FILE: manifest}, []
        for name, digest in sorted(expected.items()):
            if name != META_FILE:
                try:
                    files[name] = self._read(key, version, name)
                except FileNotFoundError:
                    problems.append(f"{name} is missing")
                    continue
                except OSError as error:
                    problems.append(f"{name} cannot be read ({error})")
                    continue
            if digest and sha256(files[name]) != digest:
                problems.append(f"{name} does not match its recorded sha256")
        if problems:
            raise CorruptAdapterError(f"{where} is corrupt: " + "; ".join(problems))
        return files

    def verify(self, key: str, version: int, *, expected_hashes: dict[str, str] | None = None) -> None:
        """Raises (NotFoundError, AdapterError) unless every file of the version is present and intact."""
        self.read_files(key, version, expected_hashes=expected_hashes)

    def load(self, key: str, version: int, *, expected_hashes: dict[str, str] | None = None) -> AdapterWeights:
        """Reads a version; every file is checked first (see :meth:`read_files`)."""
        from safetensors.torch import load as load_tensors

        from localize.adapters import make_method
        from localize.base_model import BaseDims
        from localize.engine import AdapterWeights

        files = self.read_files(key, version, expected_hashes=expected_hashes)
        try:
            meta = json.loads(files[META_FILE])
            dims = BaseDims(**meta["dims"])
            method = make_method(meta["method"], meta["method_options"], dims)
            for name in meta.get("tensor_files", ["head.safetensors"]):
                if name not in files:  # listed by the manifest, but no hash was expected for it
                    files[name] = self._read(key, version, name)
            params = load_tensors(files["adapter_model.safetensors"]) if "adapter_model.safetensors" in files else {}
            head = load_tensors(files["head.safetensors"])
        except FileNotFoundError as error:
            raise CorruptAdapterError(f"adapter {key!r} version {version} is incomplete: "
                               f"{Path(error.filename or str(error)).name} is missing") from error
        except (OSError, KeyError, TypeError, ValueError, SafetensorError) as error:
            raise AdapterError(f"adapter {key!r} version {version} cannot be read: {error}") from error
        # Where it came from, so an adapter trained on top of it (a user's head on the task prior) can refer to it.
        meta["source"] = {"store_key": key, "version": version,
                          "files": {name: sha256(data) for name, data in sorted(files.items())}}
        return AdapterWeights(method=method, params=params, head=head, labels=list(meta["labels"]),
                              base_model_id=meta["base_model_id"], version=version, meta=meta)

    def export(self, key: str, version: int, destination: str | Path, *,
               expected_hashes: dict[str, str] | None = None) -> Path:
        """Copies a verified version (PEFT layout plus head and manifest) into the empty folder ``destination``.
        A head that reads a shared encoder (a user's head on the task prior) is useless without it, so the encoder
        version it references is exported too, verified against the hashes the head recorded, into
        ``destination/encoder/``."""
        destination = Path(destination)
        if destination.exists() and not destination.is_dir():
            raise FileExistsError(f"export destination {str(destination)!r} is a file, not a folder")
        if destination.exists() and any(destination.iterdir()):
            raise FileExistsError(f"export destination {str(destination)!r} is not empty")
        files = self.read_files(key, version, expected_hashes=expected_hashes)
        reference = _encoder_reference(files[META_FILE])
        encoder = None
        if reference:  # read (and verified) before anything is written: a damaged encoder leaves no half export
            encoder = self.read_files(reference["store_key"], reference["version"],
                                      expected_hashes=reference.get("files"))
        destination.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (destination / name).write_bytes(data)
        if encoder is not None:
            (destination / ENCODER_FOLDER).mkdir()
            for name, data in encoder.items():
                (destination / ENCODER_FOLDER / name).write_bytes(data)
        return destination


class LocalAdapterStore(AdapterStore):
    """A directory on this machine: a version is written to a temporary folder, synced, and renamed into place."""

    def __init__(self, root: str | Path) -> None:
        self.root = private_folder(root)  # adapters are users' data: owner only (0700) when created here

    def __repr__(self) -> str:
        return f"LocalAdapterStore({str(self.root)!r})"

    def path(self, key: str, version: int) -> Path:
        return self.root / _check_key(key) / f"v{_check_version(version)}"

    def location(self, key: str, version: int) -> str:
        return str(self.path(key, version))

    def exists(self, key: str, version: int) -> bool:
        return (self.path(key, version) / META_FILE).is_file()

    def _publish(self, key: str, version: int, files: dict[str, bytes]) -> None:
        final = self.path(key, version)
        if final.exists():
            raise AdapterError(f"adapter {key!r} version {version} already exists; versions are immutable")
        private_folder(final.parent)
        # A writer of this version that was killed mid-write (its job is retried with the same number) left its
        # staging folder, or a deletion left its trash: neither can be anyone's live work now.
        for leftover in [*final.parent.glob(f".tmp-{final.name}-*"), *final.parent.glob(f".del-{final.name}-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        staging = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex}"
        staging.mkdir(mode=PRIVATE_FOLDER)
        try:
            for name, data in files.items():
                with open_private(staging / name) as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            os.rename(staging, final)  # atomic; fails rather than replace a folder another writer published
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_folder(final.parent)

    def _read(self, key: str, version: int, name: str) -> bytes:
        return (self.path(key, version) / name).read_bytes()

    def _remove(self, key: str, version: int) -> None:
        folder = self.path(key, version)
        if folder.exists():
            # Rename first so a concurrent reader sees the version either whole or gone.
            trash = folder.parent / f".del-{folder.name}-{uuid.uuid4().hex}"
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    """Makes a rename inside ``folder`` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class FsspecAdapterStore(AdapterStore):
    """Any fsspec URL: ``s3://bucket/prefix`` (with s3fs installed), ``gs://``, ``memory://``, ``file://`` ...

    The manifest is written last and is the commit point: object stores have no atomic rename, and a reader that
    finds no manifest treats the version as absent."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.url = url.rstrip("/")
        protocol = url.split("://", 1)[0]
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except ImportError as error:
            raise ConfigurationError(
                f"adapter store {url!r} needs the fsspec driver for {protocol!r}, which is not installed ({error}); "
                "for s3:// install localize's `s3` extra (pip install 'localize[s3]')"
            ) from error
        except (ValueError, TypeError) as error:
            raise ConfigurationError(f"adapter store {url!r} cannot be opened: {error}") from error
        self.root = root.rstrip("/")
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(f"adapter store {url!r} cannot be created or reached: {error}") from error

    def __repr__(self) -> str:
        return f"FsspecAdapterStore({self.url!r})"

    def _prefix(self, key: str, version: int) -> str:
        return f"{self.root}/{_check_key(key)}/v{_check_version(version)}"

    def location(self, key: str, version: int) -> str:
        return f"{self.url}/{_check_key(key)}/v{_check_version(version)}"

    def exists(self, key: str, version: int) -> bool:
        manifest = f"{self._prefix(key, version)}/{META_FILE}"
        self.fs.invalidate_cache(self._prefix(key, version))  # another process may have published or deleted it
        return bool(self.fs.exists(manifest))

    def _publish(self, key: str, version: int, files: dict[str, bytes]) -> None:
        prefix = self._prefix(key, version)
        if self.exists(key, version):
            raise AdapterError(f"adapter {key!r} version {version} already exists; versions are immutable")
        if self.fs.exists(prefix):  # files of a writer that died before publishing its manifest
            self.fs.rm(prefix, recursive=True)
        try:
            self.fs.makedirs(prefix, exist_ok=True)  # a real folder on file://, nothing on object stores
            for name, data in files.items():
                if name != META_FILE:
                    self.fs.pipe_file(f"{prefix}/{name}", data)
            self.fs.pipe_file(f"{prefix}/{META_FILE}", files[META_FILE])  # publishes the version
        except BaseException:
            try:
                self.fs.rm(prefix, recursive=True)
            except (OSError, ValueError):
                pass  # removed again before the next write of this version number
            raise
        finally:
            self.fs.invalidate_cache(prefix)

    def _read(self, key: str, version: int, name: str) -> bytes:
        return self.fs.cat_file(f"{self._prefix(key, version)}/{name}")

    def _remove(self, key: str, version: int) -> None:
        prefix = self._prefix(key, version)
        self.fs.invalidate_cache(prefix)
        if self.fs.exists(f"{prefix}/{META_FILE}"):
            self.fs.rm_file(f"{prefix}/{META_FILE}")  # unpublish first: readers see the version whole or gone
        if self.fs.exists(prefix):
            self.fs.rm(prefix, recursive=True)
        self.fs.invalidate_cache(prefix)


def open_store(location: str | Path, storage_options: dict[str, Any] | None = None) -> AdapterStore:
    """A folder path opens the local store; a URL (``scheme://...``, ``file://`` included) the fsspec store."""
    if isinstance(location, str) and _URL_PATTERN.match(location):
        return FsspecAdapterStore(location, storage_options)
    if storage_options:
        raise ConfigurationError(f"adapter store options {sorted(storage_options)} apply only to a URL store, "
                                 f"not to the folder {str(location)!r}")
    return LocalAdapterStore(location)


def _encoder_reference(manifest: bytes) -> dict | None:
    """The encoder a stored head references (store key, version, file hashes), from its manifest, if any."""
    try:
        reference = json.loads(manifest).get("encoder")
    except (ValueError, AttributeError):
        return None
    return reference if isinstance(reference, dict) and "store_key" in reference else None
