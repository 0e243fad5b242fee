"""A transformers-free loader for BERT encoders: a plain module tree with Hugging Face's parameter names, filled
from ``model.safetensors``, and the fast tokenizer from ``tokenizer.json``.

Importing transformers' BERT costs ~5 s of a ~7.7 s cold start on a small CPU; this path imports only torch,
safetensors and tokenizers. :class:`localize.base_model.BaseModel` runs the layers itself, so the modules only
hold weights. Module paths equal Hugging Face's (``encoder.layer.3.attention.self.query``), so quantized
replacements and PEFT-named adapters address the same sites. Anything it cannot load exactly (another model type,
other position embeddings, a missing or unexpected tensor) raises, and the caller falls back to transformers.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from torch import nn

SUPPORTED_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "gelu_new": lambda: nn.GELU(approximate="tanh")}


class UnsupportedModel(Exception):
    """The light loader cannot reproduce this model exactly (the caller uses transformers instead)."""


class _Embeddings(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden, padding_idx=config.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])


class _Layer(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        hidden, inner, eps = config["hidden_size"], config["intermediate_size"], config["layer_norm_eps"]
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        self.attention.self.query = nn.Linear(hidden, hidden)
        self.attention.self.key = nn.Linear(hidden, hidden)
        self.attention.self.value = nn.Linear(hidden, hidden)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, inner)
        self.intermediate.intermediate_act_fn = SUPPORTED_ACTIVATIONS[config["hidden_act"]]()
        self.output = nn.Module()
        self.output.dense = nn.Linear(inner, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)


class LightBert(nn.Module):
    """Embeddings and encoder layers of a BERT model (no pooler), named as ``transformers.BertModel`` names them."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = SimpleNamespace(**config)
        self.embeddings = _Embeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(config) for _ in range(config["num_hidden_layers"]))


def load_light_bert(path: Path) -> LightBert:
    """The frozen encoder at ``path``; raises :class:`UnsupportedModel` where it would differ from transformers."""
    from safetensors.torch import load_file

    config = json.loads((path / "config.json").read_text())
    problems = []
    if config.get("model_type") != "bert":
        problems.append(f"model_type {config.get('model_type')!r}")
    if config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {config.get('position_embedding_type')!r}")
    if config.get("hidden_act") not in SUPPORTED_ACTIVATIONS:
        problems.append(f"hidden_act {config.get('hidden_act')!r}")
    weights_file = path / "model.safetensors"
    if not weights_file.is_file():
        problems.append("no model.safetensors")
    if problems:
        raise UnsupportedModel(", ".join(problems))
    model = LightBert(config)
    state = load_file(str(weights_file))
    prefixes = {key.split(".", 1)[0] for key in state}
    if "bert" in prefixes:  # saved from a model with a task head: the encoder lives under "bert."
        state = {key[len("bert."):]: value for key, value in state.items() if key.startswith("bert.")}
    state = {key: value for key, value in state.items()
             if not key.startswith("pooler.") and not key.endswith("position_ids")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(key for key in set(expected) & set(state) if state[key].shape != expected[key].shape)
    if missing or unexpected or wrong:
        raise UnsupportedModel(f"weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}, "
                               f"wrong shapes {wrong[:3]}")
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model


def load_fast_tokenizer(path: Path, max_length: int):
    """The ``tokenizers`` tokenizer from ``tokenizer.json``, padding to the longest text and truncating to
    ``max_length`` tokens, as ``AutoTokenizer(...)(texts, padding=True, truncation=True, max_length=...)`` does."""
    from tokenizers import Tokenizer

    file = path / "tokenizer.json"
    if not file.is_file():
        raise UnsupportedModel("no tokenizer.json")
    tokenizer = Tokenizer.from_file(str(file))
    settings = json.loads((path / "tokenizer_config.json").read_text()) if (path / "tokenizer_config.json").is_file() else {}
    pad_token = settings.get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise UnsupportedModel(f"pad token {pad_token!r} is not in the vocabulary")
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return tokenizer
