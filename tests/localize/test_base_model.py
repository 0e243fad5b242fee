"""The frozen base: our layer-by-layer forward equals Hugging Face's, sharing, and configuration errors."""
from __future__ import annotations

import pytest
import torch

from localize.base_model import BUNDLED_MODEL_ID, BaseModel, bundled_model_path, get_base_model
from localize.errors import ConfigurationError

TEXTS = [
    "Paid the electricity bill",
    "Transferred 2,500 EUR to the savings account after the quarterly review with our accountant",
    "",
    "Refund: café ☕ receipt #42",
]


def test_dims_of_the_bundled_model(base):
    assert base.dims.model_id == BUNDLED_MODEL_ID
    assert (base.dims.hidden_size, base.dims.num_layers, base.dims.num_heads) == (384, 6, 12)
    assert base.dims.head_dim == 32
    assert base.dims.intermediate_size == 1536
    assert all(not p.requires_grad for p in base.model.parameters())
    assert not base.model.training


def test_layer_by_layer_forward_equals_hugging_face(base):
    input_ids, mask = base.tokenize(TEXTS)
    assert int(mask.sum()) < mask.numel()  # padding present
    with torch.no_grad():
        expected = base.hf_model()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        ours = base.run_layers(base.embed(input_ids), mask)
    real = mask.bool()
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours[real], expected[real], atol=1e-5, rtol=0)
    # Pooled embeddings (what every head sees) agree too, and encode() is the same computation.
    torch.testing.assert_close(base.pool(ours, mask), base.pool(expected, mask), atol=1e-5, rtol=0)
    torch.testing.assert_close(base.encode(TEXTS), base.pool(expected, mask).float(), atol=1e-5, rtol=0)


def test_run_layers_in_pieces_equals_one_pass(base):
    input_ids, mask = base.tokenize(TEXTS[:2])
    with torch.no_grad():
        whole = base.run_layers(base.embed(input_ids), mask)
        lower = base.run_layers(base.embed(input_ids), mask, stop=3)
        pieces = base.run_layers(lower, mask, start=3)
    assert torch.equal(whole, pieces)


def test_encode_is_independent_of_batching(base):
    together = base.encode(TEXTS)
    one_by_one = torch.cat([base.encode([text]) for text in TEXTS])
    assert together.shape == (len(TEXTS), 384)
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=0)
    assert base.encode([]).shape == (0, 384)


def test_embed_puts_prompts_in_front(base):
    input_ids, _ = base.tokenize(["hello world"])
    prompts = torch.randn(1, 3, 384)
    plain = base.embed(input_ids)
    prompted = base.embed(input_ids, prompts)
    assert prompted.shape == (1, input_ids.shape[1] + 3, 384)
    assert not torch.allclose(prompted[:, 3:], plain)  # real tokens moved to positions 3.. (as PEFT does)


def test_tokenize_truncates_to_max_seq_length(base):
    input_ids, mask = base.tokenize(["word " * 500])
    assert input_ids.shape == mask.shape == (1, base.max_seq_length)


def test_get_base_model_is_shared(base):
    first = get_base_model()
    assert first is get_base_model()
    assert first is base


@pytest.mark.parametrize("quantization", ["bnb8", "bnb4"])
def test_bitsandbytes_on_cpu_is_a_configuration_error(quantization):
    with pytest.raises(ConfigurationError, match="CUDA") as info:
        BaseModel(quantization=quantization, device="cpu")
    assert repr(quantization) in str(info.value)


@pytest.mark.parametrize("quantization", ["fp4", "INT8", ""])
def test_unknown_quantization_is_a_configuration_error(quantization):
    with pytest.raises(ConfigurationError, match=rf"quantization {quantization!r} is not one of"):
        BaseModel(quantization=quantization, device="cpu")


def test_directory_without_config_is_a_configuration_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="config.json") as info:
        BaseModel(tmp_path, device="cpu")
    assert str(tmp_path) in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_gpu_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="CUDA"):
        BaseModel(device="cuda")


def test_bundled_model_path_has_a_config():
    assert (bundled_model_path() / "config.json").is_file()


def test_bundled_base_loads_without_transformers_and_tokenizes_as_hugging_face(base):
    """The light loader (our BERT modules + tokenizers) is used for the bundled model, and its token ids equal
    transformers' tokenizer's, padding and truncation included."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    assert base.tokenizer is None and base._fast_tokenizer is not None
    reference = AutoTokenizer.from_pretrained(base.path, local_files_only=True)
    texts = ["Gold is UP 150%!!", "Ölpreis fällt — café", "word " * 300, "a"]
    ids, mask = base.tokenize(texts)
    expected = reference(texts, padding=True, truncation=True, max_length=base.max_seq_length, return_tensors="pt")
    assert ids.shape[1] == base.max_seq_length  # the long text was truncated
    assert torch.equal(ids.cpu(), expected["input_ids"]) and torch.equal(mask.cpu(), expected["attention_mask"])
    # A fresh process serving from the bundled base never imports transformers.
    code = ("import sys; from localize.base_model import BaseModel; b = BaseModel(); b.encode(['gold is up']); "
            "print('transformers' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert child.stdout.strip().splitlines()[-1] == "False"
