"""The local adapter store: atomic immutable versions, integrity checks, key validation, deletion.

These tests use small made-up dims, so they need no base model.
"""
from __future__ import annotations

import json
import re

import pytest
import torch

import localize.store as store_module
from localize.adapters import make_method
from localize.base_model import BaseDims
from localize.engine import AdapterWeights
from localize.errors import AdapterError, NotFoundError
from localize.store import LocalAdapterStore, StoredAdapter, open_store

DIMS = BaseDims(model_id="test/tiny", hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16)
KEY = "users/42/tasks/7"


def _weights(method="lora", options=None, labels=("no", "yes"), seed=0) -> AdapterWeights:
    generator = torch.Generator().manual_seed(seed)
    m = make_method(method, options if options is not None else {"r": 2}, DIMS)
    params = {k: v + torch.randn(v.shape, generator=generator) for k, v in m.init_params(None, generator).items()}
    head = {"weight": torch.randn(len(labels), DIMS.hidden_size, generator=generator), "bias": torch.randn(len(labels))}
    return AdapterWeights(method=m, params=params, head=head, labels=list(labels), base_model_id=DIMS.model_id)


@pytest.fixture
def store(tmp_path):
    return LocalAdapterStore(tmp_path / "adapters")


def _leftovers(store: LocalAdapterStore) -> list[str]:
    return [p.name for p in store.root.rglob("*") if p.name.startswith((".tmp-", ".del-"))]


def test_save_and_load_round_trip(store):
    weights = _weights()
    stored = store.save(KEY, 1, weights, extra={"metrics": {"accuracy": 0.9}})
    assert isinstance(stored, StoredAdapter)
    assert (stored.key, stored.version) == (KEY, 1)
    folder = store.path(KEY, 1)
    assert folder == store.root / "users" / "42" / "tasks" / "7" / "v1"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["adapter_config.json", "adapter_model.safetensors", "head.safetensors", "localize.json"]
    assert sorted(stored.files) == names
    assert all(len(digest) == 64 for digest in stored.files.values())
    assert stored.nbytes == sum(p.stat().st_size for p in folder.iterdir())
    assert store.exists(KEY, 1) and not store.exists(KEY, 2)

    meta = json.loads((folder / "localize.json").read_text())
    assert meta["method"] == "lora" and meta["labels"] == ["no", "yes"] and meta["version"] == 1
    assert meta["metrics"] == {"accuracy": 0.9}
    peft_config = json.loads((folder / "adapter_config.json").read_text())
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


def test_head_only_adapter_without_method_tensors(store):
    weights = _weights("head", {}, labels=("a", "b", "c"))
    weights.params = {}  # a plain linear head: no tensors of its own
    store.save("k", 3, weights)
    names = {p.name for p in store.path("k", 3).iterdir()}
    assert names == {"head.safetensors", "localize.json"}
    loaded = store.load("k", 3)
    assert loaded.params == {} and loaded.labels == ["a", "b", "c"]
    assert torch.equal(loaded.head["weight"], weights.head["weight"])


def test_save_leaves_no_temporary_folders(store):
    store.save(KEY, 1, _weights())
    store.save(KEY, 2, _weights(seed=1))
    assert _leftovers(store) == []
    assert sorted(p.name for p in store.path(KEY, 1).parent.iterdir()) == ["v1", "v2"]


def test_saving_an_existing_version_is_refused_and_keeps_the_original(store):
    first = store.save(KEY, 1, _weights(seed=0))
    with pytest.raises(AdapterError, match=r"version 1 already exists"):
        store.save(KEY, 1, _weights(seed=1))
    assert _leftovers(store) == []
    loaded = store.load(KEY, 1, expected_hashes=first.files)  # untouched
    assert torch.equal(loaded.head["weight"], _weights(seed=0).head["weight"])


def test_failed_save_leaves_nothing_behind(store):
    broken = _weights()
    broken.head = {"weight": "not a tensor"}  # fails halfway through writing
    with pytest.raises(AttributeError):
        store.save(KEY, 1, broken)
    assert not store.exists(KEY, 1)
    assert not store.path(KEY, 1).exists()
    assert _leftovers(store) == []
    store.save(KEY, 1, _weights())  # the version is still free
    assert store.exists(KEY, 1)


def test_crash_before_rename_is_invisible(store, monkeypatch):
    def crash(*args):
        raise OSError("disk went away")

    monkeypatch.setattr(store_module.os, "rename", crash)
    with pytest.raises(OSError, match="disk went away"):
        store.save(KEY, 1, _weights())
    monkeypatch.undo()
    assert not store.exists(KEY, 1)
    assert _leftovers(store) == []
    with pytest.raises(NotFoundError):
        store.load(KEY, 1)


@pytest.mark.parametrize("name", ["head.safetensors", "adapter_model.safetensors", "localize.json"])
def test_expected_hashes_detect_a_corrupted_file(store, name):
    stored = store.save(KEY, 1, _weights())
    path = store.path(KEY, 1) / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(AdapterError, match=rf"corrupt: {name} does not match its recorded sha256") as info:
        store.load(KEY, 1, expected_hashes=stored.files)
    assert KEY in str(info.value)
    others = [other for other in stored.files if other != name]
    assert not any(other in str(info.value) for other in others)  # only the bad file is named


def test_expected_hashes_detect_a_missing_file(store):
    stored = store.save(KEY, 1, _weights())
    (store.path(KEY, 1) / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match=r"adapter_model\.safetensors is missing"):
        store.load(KEY, 1, expected_hashes=stored.files)


def test_expected_hashes_report_every_problem(store):
    stored = store.save(KEY, 1, _weights())
    folder = store.path(KEY, 1)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "head.safetensors").write_bytes(b"garbage")
    with pytest.raises(AdapterError) as info:
        store.load(KEY, 1, expected_hashes=stored.files)
    assert "adapter_model.safetensors is missing" in str(info.value)
    assert "head.safetensors does not match" in str(info.value)


def test_unreadable_metadata_is_an_adapter_error(store):
    store.save(KEY, 1, _weights())
    (store.path(KEY, 1) / "localize.json").write_text("{")
    with pytest.raises(AdapterError, match="cannot be read"):
        store.load(KEY, 1)  # no hashes to check: reading itself fails cleanly
    store.save(KEY, 2, _weights())
    meta_path = store.path(KEY, 2) / "localize.json"
    meta = json.loads(meta_path.read_text())
    del meta["dims"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AdapterError, match="cannot be read"):
        store.load(KEY, 2)


@pytest.mark.parametrize("name", ["head.safetensors", "adapter_model.safetensors"])
def test_unparseable_tensor_file_is_an_adapter_error(store, name):
    store.save(KEY, 1, _weights())
    (store.path(KEY, 1) / name).write_bytes(b"garbage")
    with pytest.raises(AdapterError, match="cannot be read"):
        store.load(KEY, 1)  # no hashes to check: the parse error itself becomes an AdapterError


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "head.safetensors"])
def test_missing_tensor_file_is_an_adapter_error_even_without_hashes(store, name):
    """A LoRA adapter must not load with no tensors (it would fail later, while serving)."""
    store.save(KEY, 1, _weights())
    (store.path(KEY, 1) / name).unlink()
    with pytest.raises(AdapterError, match=re.escape(name)):
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
def test_invalid_keys_are_refused(store, key):
    with pytest.raises(ValueError, match="adapter key"):
        store.save(key, 1, _weights())
    with pytest.raises(ValueError, match="adapter key"):
        store.load(key, 1)
    with pytest.raises(ValueError, match="adapter key"):
        store.exists(key, 1)
    with pytest.raises(ValueError, match="adapter key"):
        store.delete(key, 1)
    assert not (store.root.parent / "x").exists()


def test_delete_removes_the_version(store):
    stored = store.save(KEY, 1, _weights())
    store.save(KEY, 2, _weights(seed=1))
    store.delete(KEY, 1)
    assert not store.exists(KEY, 1)
    assert not store.path(KEY, 1).exists()
    with pytest.raises(NotFoundError):
        store.load(KEY, 1, expected_hashes=stored.files)
    assert store.exists(KEY, 2)  # other versions stay
    assert _leftovers(store) == []
    store.delete(KEY, 1)  # deleting again is a no-op
    store.delete("never/saved", 5)
    store.save(KEY, 1, _weights(seed=3))  # the number may be reused after deletion
    assert store.exists(KEY, 1)


def test_open_store(tmp_path):
    store = open_store(tmp_path / "new")
    assert isinstance(store, LocalAdapterStore)
    assert (tmp_path / "new").is_dir()
