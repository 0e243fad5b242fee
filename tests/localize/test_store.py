"""The adapter store contract, run against every backend: the local directory, and fsspec at ``memory://`` and at a
``file://`` URL. Atomic immutable versions, sha256 checks against the database's record and the manifest's, clear
errors naming the version and the file, key validation, deletion, export.

These tests use small made-up dims, so they need no base model.
"""
from __future__ import annotations

import json
import re
import uuid

import pytest
import torch

import localize.store as store_module
from localize.adapters import make_method
from localize.base_model import BaseDims
from localize.engine import AdapterWeights
from localize.errors import AdapterError, ConfigurationError, NotFoundError
from localize.store import META_FILE, AdapterStore, FsspecAdapterStore, LocalAdapterStore, StoredAdapter, open_store

DIMS = BaseDims(model_id="test/tiny", hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16)
KEY = "users/42/tasks/7"
LORA_FILES = ["adapter_config.json", "adapter_model.safetensors", "head.safetensors", "localize.json"]


def _weights(method="lora", options=None, labels=("no", "yes"), seed=0) -> AdapterWeights:
    generator = torch.Generator().manual_seed(seed)
    m = make_method(method, options if options is not None else {"r": 2}, DIMS)
    params = {k: v + torch.randn(v.shape, generator=generator) for k, v in m.init_params(None, generator).items()}
    head = {"weight": torch.randn(len(labels), DIMS.hidden_size, generator=generator), "bias": torch.randn(len(labels))}
    return AdapterWeights(method=m, params=params, head=head, labels=list(labels), base_model_id=DIMS.model_id)


class Raw:
    """Reaches behind a store's back, as a failing disk, a crashed writer or a careless operator would."""

    def __init__(self, store: AdapterStore) -> None:
        self.store = store

    def _path(self, key: str, version: int, name: str) -> str:
        if isinstance(self.store, LocalAdapterStore):
            return str(self.store.path(key, version) / name)
        return f"{self.store._prefix(key, version)}/{name}"

    def read(self, key: str, version: int, name: str) -> bytes:
        if isinstance(self.store, LocalAdapterStore):
            return (self.store.path(key, version) / name).read_bytes()
        return self.store.fs.cat_file(self._path(key, version, name))

    def write(self, key: str, version: int, name: str, data: bytes) -> None:
        if isinstance(self.store, LocalAdapterStore):
            folder = self.store.path(key, version)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        else:
            self.store.fs.makedirs(self.store._prefix(key, version), exist_ok=True)
            self.store.fs.pipe_file(self._path(key, version, name), data)

    def remove(self, key: str, version: int, name: str) -> None:
        if isinstance(self.store, LocalAdapterStore):
            (self.store.path(key, version) / name).unlink()
        else:
            self.store.fs.rm_file(self._path(key, version, name))

    def names(self, key: str, version: int) -> list[str]:
        """The files under a version's prefix, published or not."""
        if isinstance(self.store, LocalAdapterStore):
            folder = self.store.path(key, version)
            return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        prefix = self.store._prefix(key, version)
        self.store.fs.invalidate_cache()
        if not self.store.fs.exists(prefix):
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in self.store.fs.find(prefix))

    def everything(self) -> list[str]:
        """Every file under the store's root, as paths relative to it."""
        if isinstance(self.store, LocalAdapterStore):
            return sorted(str(p.relative_to(self.store.root)) for p in self.store.root.rglob("*") if p.is_file())
        self.store.fs.invalidate_cache()
        return sorted(p[len(self.store.root.lstrip("/")) :].lstrip("/") for p in
                      (q.lstrip("/") for q in self.store.fs.find(self.store.root)))

    def corrupt(self, key: str, version: int, name: str) -> None:
        data = bytearray(self.read(key, version, name))
        data[-1] ^= 0x01  # one flipped bit
        self.write(key, version, name, bytes(data))


@pytest.fixture(params=["local", "memory", "file"])
def store(request, tmp_path) -> AdapterStore:
    if request.param == "local":
        yield LocalAdapterStore(tmp_path / "adapters")
    elif request.param == "file":
        yield open_store(f"file://{tmp_path / 'adapters'}")
    else:
        opened = open_store(f"memory://localize-test-{uuid.uuid4().hex}/adapters")
        yield opened
        opened.fs.rm(opened.root, recursive=True)  # memory:// is one store per process


@pytest.fixture
def raw(store) -> Raw:
    return Raw(store)


def test_save_and_load_round_trip(store, raw):
    weights = _weights()
    stored = store.save(KEY, 1, weights, extra={"metrics": {"accuracy": 0.9}})
    assert isinstance(stored, StoredAdapter)
    assert (stored.key, stored.version) == (KEY, 1)
    assert raw.names(KEY, 1) == LORA_FILES
    assert sorted(stored.files) == LORA_FILES
    assert all(len(digest) == 64 for digest in stored.files.values())
    assert stored.nbytes == sum(len(raw.read(KEY, 1, name)) for name in LORA_FILES)
    assert store.exists(KEY, 1) and not store.exists(KEY, 2)
    assert store.location(KEY, 1).endswith("users/42/tasks/7/v1")

    meta = json.loads(raw.read(KEY, 1, META_FILE))
    assert meta["method"] == "lora" and meta["labels"] == ["no", "yes"] and meta["version"] == 1
    assert meta["metrics"] == {"accuracy": 0.9}
    # The manifest records every other file's hash, the database records all of them (the manifest's too).
    assert meta["sha256"] == {name: digest for name, digest in stored.files.items() if name != META_FILE}
    peft_config = json.loads(raw.read(KEY, 1, "adapter_config.json"))
    assert peft_config["peft_type"] == "LORA" and peft_config["r"] == 2
    assert peft_config["base_model_name_or_path"] == DIMS.model_id

    loaded = store.load(KEY, 1, expected_hashes=stored.files)
    assert loaded.version == 1
    assert loaded.labels == weights.labels and loaded.base_model_id == weights.base_model_id
    assert loaded.method.name == "lora" and loaded.method.config == weights.method.config
    assert loaded.method.dims == DIMS
    assert loaded.meta["metrics"] == {"accuracy": 0.9}
    assert set(loaded.params) == set(weights.params)
    for name in weights.params:
        assert torch.equal(loaded.params[name], weights.params[name])
    for name in weights.head:
        assert torch.equal(loaded.head[name], weights.head[name])


def test_local_layout_is_a_plain_folder(tmp_path):
    store = LocalAdapterStore(tmp_path / "adapters")
    store.save(KEY, 1, _weights())
    folder = store.path(KEY, 1)
    assert folder == store.root / "users" / "42" / "tasks" / "7" / "v1"
    assert sorted(p.name for p in folder.iterdir()) == LORA_FILES


def test_head_only_adapter_without_method_tensors(store, raw):
    weights = _weights("head", {}, labels=("a", "b", "c"))
    weights.params = {}  # a plain linear head: no tensors of its own
    store.save("k", 3, weights)
    assert raw.names("k", 3) == ["head.safetensors", "localize.json"]
    loaded = store.load("k", 3)
    assert loaded.params == {} and loaded.labels == ["a", "b", "c"]
    assert torch.equal(loaded.head["weight"], weights.head["weight"])


def test_save_leaves_no_temporary_files(store, raw):
    store.save(KEY, 1, _weights())
    store.save(KEY, 2, _weights(seed=1))
    assert raw.everything() == [f"{KEY}/v{v}/{name}" for v in (1, 2) for name in LORA_FILES]


def test_saving_an_existing_version_is_refused_and_keeps_the_original(store, raw):
    first = store.save(KEY, 1, _weights(seed=0))
    with pytest.raises(AdapterError, match=r"version 1 already exists"):
        store.save(KEY, 1, _weights(seed=1))
    assert raw.names(KEY, 1) == LORA_FILES
    loaded = store.load(KEY, 1, expected_hashes=first.files)  # untouched
    assert torch.equal(loaded.head["weight"], _weights(seed=0).head["weight"])


def test_failed_save_leaves_nothing_behind(store, raw):
    broken = _weights()
    broken.head = {"weight": "not a tensor"}  # fails halfway through serializing
    with pytest.raises(AttributeError):
        store.save(KEY, 1, broken)
    assert not store.exists(KEY, 1)
    assert raw.everything() == []
    store.save(KEY, 1, _weights())  # the version is still free
    assert store.exists(KEY, 1)


def test_local_crash_before_rename_is_invisible(tmp_path, monkeypatch):
    store = LocalAdapterStore(tmp_path / "adapters")

    def crash(*args):
        raise OSError("disk went away")

    monkeypatch.setattr(store_module.os, "rename", crash)
    with pytest.raises(OSError, match="disk went away"):
        store.save(KEY, 1, _weights())
    monkeypatch.undo()
    assert not store.exists(KEY, 1)
    assert Raw(store).everything() == []
    with pytest.raises(NotFoundError):
        store.load(KEY, 1)


def test_a_killed_writers_staging_folder_is_swept_when_its_version_is_written_again(tmp_path):
    store = LocalAdapterStore(tmp_path / "adapters")
    parent = store.path(KEY, 1).parent
    parent.mkdir(parents=True)
    dead = [parent / ".tmp-v1-killedwriter", parent / ".del-v1-killeddelete", parent / ".tmp-v2-otherversion"]
    for folder in dead:
        folder.mkdir()
        (folder / "head.safetensors").write_bytes(b"partial")
    store.save(KEY, 1, _weights())  # a worker killed while writing version 1; its job is retried with the same number
    assert store.exists(KEY, 1)
    assert [folder.exists() for folder in dead] == [False, False, True]  # another version's staging is not ours


@pytest.mark.parametrize("protocol", ["memory", "file"])
def test_fsspec_writes_the_manifest_last(protocol, tmp_path, monkeypatch):
    """A writer that dies while publishing leaves no visible version: every data file is written before the
    manifest, and a failed write removes what it wrote."""
    url = f"memory://localize-test-{uuid.uuid4().hex}" if protocol == "memory" else f"file://{tmp_path}/store"
    store = open_store(url)
    written = []
    original = store.fs.pipe_file

    def recording(path, data, *args, **kwargs):
        written.append(path.rsplit("/", 1)[-1])
        if path.endswith(META_FILE):
            raise OSError("connection reset while publishing")
        return original(path, data, *args, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", recording)
    with pytest.raises(OSError, match="connection reset"):
        store.save(KEY, 1, _weights())
    assert written[-1] == META_FILE and sorted(written[:-1]) == sorted(set(LORA_FILES) - {META_FILE})
    monkeypatch.undo()
    assert not store.exists(KEY, 1)
    assert Raw(store).everything() == []
    store.save(KEY, 1, _weights())
    assert store.exists(KEY, 1)


def test_files_without_a_manifest_are_not_a_version(store, raw):
    """What a writer that died before publishing leaves behind is invisible, and is replaced by the next save."""
    stale = _weights(seed=5)
    store.save(KEY, 1, stale)
    data = {name: raw.read(KEY, 1, name) for name in LORA_FILES}
    store.delete(KEY, 1)
    for name in ("adapter_model.safetensors", "head.safetensors"):
        raw.write(KEY, 2, name, data[name])
    assert not store.exists(KEY, 2)
    with pytest.raises(NotFoundError, match=r"version 2 is not in the store \(localize\.json is missing"):
        store.load(KEY, 2)
    if isinstance(store, LocalAdapterStore):
        # A local folder only ever appears whole (rename); a manifest-less folder is damage, never overwritten.
        with pytest.raises(AdapterError, match="already exists"):
            store.save(KEY, 2, _weights(seed=6))
        return
    fresh = store.save(KEY, 2, _weights(seed=6))
    loaded = store.load(KEY, 2, expected_hashes=fresh.files)
    assert torch.equal(loaded.head["weight"], _weights(seed=6).head["weight"])


@pytest.mark.parametrize("name", LORA_FILES)
def test_recorded_hashes_detect_a_corrupted_file(store, raw, name):
    stored = store.save(KEY, 1, _weights())
    raw.corrupt(KEY, 1, name)
    with pytest.raises(AdapterError, match=rf"version 1 is corrupt: {re.escape(name)} does not match its recorded sha256") as info:
        store.load(KEY, 1, expected_hashes=stored.files)
    assert KEY in str(info.value)
    others = [other for other in stored.files if other != name]
    assert not any(other in str(info.value) for other in others)  # only the bad file is named
    with pytest.raises(AdapterError, match=re.escape(name)):
        store.verify(KEY, 1, expected_hashes=stored.files)


@pytest.mark.parametrize("name", ["adapter_config.json", "adapter_model.safetensors", "head.safetensors"])
def test_the_manifest_hashes_detect_a_corrupted_file_without_the_database(store, raw, name):
    store.save(KEY, 1, _weights())
    raw.corrupt(KEY, 1, name)
    with pytest.raises(AdapterError, match=rf"corrupt: {re.escape(name)} does not match its recorded sha256"):
        store.load(KEY, 1)


def test_recorded_hashes_detect_a_missing_file(store, raw):
    stored = store.save(KEY, 1, _weights())
    raw.remove(KEY, 1, "adapter_model.safetensors")
    with pytest.raises(AdapterError, match=r"version 1 is corrupt: adapter_model\.safetensors is missing"):
        store.load(KEY, 1, expected_hashes=stored.files)


def test_recorded_hashes_report_every_problem(store, raw):
    stored = store.save(KEY, 1, _weights())
    raw.remove(KEY, 1, "adapter_model.safetensors")
    raw.write(KEY, 1, "head.safetensors", b"garbage")
    with pytest.raises(AdapterError) as info:
        store.load(KEY, 1, expected_hashes=stored.files)
    assert "adapter_model.safetensors is missing" in str(info.value)
    assert "head.safetensors does not match" in str(info.value)


def test_unreadable_metadata_is_an_adapter_error(store, raw):
    store.save(KEY, 1, _weights())
    raw.write(KEY, 1, META_FILE, b"{")
    with pytest.raises(AdapterError, match="cannot be read"):
        store.load(KEY, 1)  # no hashes to check: reading itself fails cleanly
    store.save(KEY, 2, _weights())
    meta = json.loads(raw.read(KEY, 2, META_FILE))
    del meta["dims"]
    raw.write(KEY, 2, META_FILE, json.dumps(meta).encode())
    with pytest.raises(AdapterError, match="cannot be read"):
        store.load(KEY, 2)


def _drop_manifest_hashes(raw: Raw, key: str, version: int) -> None:
    """Makes a version look like one written before manifests recorded hashes."""
    meta = json.loads(raw.read(key, version, META_FILE))
    del meta["sha256"]
    raw.write(key, version, META_FILE, json.dumps(meta).encode())


@pytest.mark.parametrize("name", ["head.safetensors", "adapter_model.safetensors"])
def test_unparseable_tensor_file_is_an_adapter_error(store, raw, name):
    store.save(KEY, 1, _weights())
    _drop_manifest_hashes(raw, KEY, 1)
    raw.write(KEY, 1, name, b"garbage")
    with pytest.raises(AdapterError, match="version 1 cannot be read"):
        store.load(KEY, 1)  # nothing to check the hash against: the parse error itself becomes an AdapterError


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "head.safetensors"])
@pytest.mark.parametrize("manifest_hashes", [True, False])
def test_missing_tensor_file_is_an_adapter_error_even_without_the_database(store, raw, name, manifest_hashes):
    """A LoRA adapter must not load with no tensors (it would fail later, while serving)."""
    store.save(KEY, 1, _weights())
    if not manifest_hashes:
        _drop_manifest_hashes(raw, KEY, 1)
    raw.remove(KEY, 1, name)
    with pytest.raises(AdapterError, match=rf"version 1 .*{re.escape(name)} is missing"):
        store.load(KEY, 1)


def test_load_missing_version_is_not_found(store):
    with pytest.raises(NotFoundError, match=r"version 9"):
        store.load(KEY, 9)
    store.save(KEY, 1, _weights())
    with pytest.raises(NotFoundError):
        store.load(KEY, 2)
    with pytest.raises(NotFoundError):
        store.load("someone/else", 1)


@pytest.mark.parametrize(
    "key", ["../x", "a/../../b", "..", ".", "a/./b", "/etc/passwd", "a//b", "a/", "", "a b", "a\\b", "ü"]
)
def test_invalid_keys_are_refused(store, raw, key):
    with pytest.raises(ValueError, match="adapter key"):
        store.save(key, 1, _weights())
    with pytest.raises(ValueError, match="adapter key"):
        store.load(key, 1)
    with pytest.raises(ValueError, match="adapter key"):
        store.exists(key, 1)
    with pytest.raises(ValueError, match="adapter key"):
        store.delete(key, 1)
    assert raw.everything() == []


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.5])
def test_invalid_versions_are_refused(store, version):
    with pytest.raises(ValueError, match="adapter version"):
        store.save(KEY, version, _weights())
    with pytest.raises(ValueError, match="adapter version"):
        store.load(KEY, version)


def test_delete_removes_the_version(store, raw):
    stored = store.save(KEY, 1, _weights())
    store.save(KEY, 2, _weights(seed=1))
    store.delete(KEY, 1)
    assert not store.exists(KEY, 1)
    assert raw.names(KEY, 1) == []
    with pytest.raises(NotFoundError):
        store.load(KEY, 1, expected_hashes=stored.files)
    assert store.exists(KEY, 2)  # other versions stay
    assert raw.everything() == [f"{KEY}/v2/{name}" for name in LORA_FILES]
    store.delete(KEY, 1)  # deleting again is a no-op
    store.delete("never/saved", 5)
    store.save(KEY, 1, _weights(seed=3))  # the number may be reused after deletion
    assert store.exists(KEY, 1)


def test_export_copies_a_verified_version(store, raw, tmp_path):
    stored = store.save(KEY, 1, _weights())
    out = store.export(KEY, 1, tmp_path / "out", expected_hashes=stored.files)
    assert sorted(p.name for p in out.iterdir()) == LORA_FILES
    assert all((out / name).read_bytes() == raw.read(KEY, 1, name) for name in LORA_FILES)
    with pytest.raises(FileExistsError, match="is not empty"):
        store.export(KEY, 1, out, expected_hashes=stored.files)
    raw.corrupt(KEY, 1, "head.safetensors")
    with pytest.raises(AdapterError, match="head.safetensors does not match"):
        store.export(KEY, 1, tmp_path / "bad", expected_hashes=stored.files)
    assert not (tmp_path / "bad").exists()


def test_two_stores_on_one_url_share_versions(store, tmp_path):
    """What one machine publishes another sees (the same URL opened twice stands in for two machines)."""
    twin = LocalAdapterStore(store.root) if isinstance(store, LocalAdapterStore) else open_store(store.url)
    stored = store.save(KEY, 1, _weights())
    assert twin.exists(KEY, 1)
    loaded = twin.load(KEY, 1, expected_hashes=stored.files)
    assert torch.equal(loaded.head["weight"], _weights().head["weight"])
    twin.delete(KEY, 1)
    assert not store.exists(KEY, 1)


def test_open_store_picks_the_backend_from_the_location(tmp_path):
    assert isinstance(open_store(tmp_path / "new"), LocalAdapterStore)
    assert (tmp_path / "new").is_dir()
    assert isinstance(open_store(str(tmp_path / "plain")), LocalAdapterStore)
    file_store = open_store(f"file://{tmp_path / 'url'}")
    assert isinstance(file_store, FsspecAdapterStore) and (tmp_path / "url").is_dir()
    assert isinstance(open_store("memory://localize-test-open"), FsspecAdapterStore)


def test_open_store_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigurationError, match=r"adapter store 'nosuchprotocol://x' cannot be opened"):
        open_store("nosuchprotocol://x")
    with pytest.raises(ConfigurationError, match=r"options \['anon'\] apply only to a URL store"):
        open_store(tmp_path / "x", {"anon": True})


def test_s3_without_its_driver_names_the_extra_to_install():
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("s3fs is installed here: the missing-driver message cannot be shown")
    with pytest.raises(ConfigurationError, match=r"'s3'.*localize\[s3\]"):
        open_store("s3://bucket/prefix")
