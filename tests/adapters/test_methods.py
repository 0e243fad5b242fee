"""Every registered method trains, saves, loads and serves; PEFT reads the saved folders and agrees with us."""
from __future__ import annotations

import copy

import pytest
import torch
from localize.adapters import available_methods

from localize.engine import Engine
from localize.store import LocalAdapterStore
from localize.training import Trainer, train_adapter
from localize.training_args import TrainingArguments

QUERIES = [
    "Invoice 999 from Acme Corp for office chairs",
    "Lunch with my brother at the pizzeria on Sunday, then a long walk along the river",
    "VAT",
]


def _probabilities(engine: Engine, weights, texts=QUERIES) -> torch.Tensor:
    predictions = engine.predict([(weights, text) for text in texts])
    return torch.tensor([[p.probabilities[label] for label in weights.labels] for p in predictions])


def _train(base, tiny_texts, method, options=None, epochs=1):
    texts, john, _, label_set = tiny_texts
    args = TrainingArguments(method=method, method_options=options or {}, max_epochs=epochs, pooled_dropout=0.0)
    return train_adapter(base, args, texts, john, label_set)


METHOD_CASES = [pytest.param(name, {}, id=name) for name in available_methods()] + [
    pytest.param("prefix_tuning", {"layers": [-2, -1], "num_virtual_tokens": 4}, id="prefix_tuning-top-layers"),
]


@pytest.mark.parametrize("method, options", METHOD_CASES)
def test_train_save_load_predicts_identically(base, tiny_texts, tmp_path, method, options):
    texts, john, _, label_set = tiny_texts
    args = TrainingArguments(method=method, method_options=options, max_epochs=2, pooled_dropout=0.0)
    trainer = Trainer(base, args, texts, john, label_set)
    trainer.prepare()
    initial = {k: v.clone() for k, v in trainer.params.items()}
    initial_head = trainer.head["weight"].clone()
    trainer.fit()
    weights = trainer.result()
    assert weights.method.name == method
    assert weights.trainable_params > 0
    assert weights.nbytes > 0
    assert weights.labels == label_set
    assert weights.meta["metrics"]["epochs"] >= 1
    # Training moved the head and the method's own parameters (every method but the head has some).
    assert not torch.equal(weights.head["weight"], initial_head)
    assert set(weights.params) == set(initial)
    if method != "head":
        assert initial, f"{method} has no parameters of its own"
    if initial:
        assert any(not torch.equal(weights.params[k], initial[k]) for k in initial)

    store = LocalAdapterStore(tmp_path / "store")
    stored = store.save("users/john/task", 1, weights)
    assert stored.nbytes > 0
    folder = store.path("users/john/task", 1)
    on_disk = sum(f.stat().st_size for f in folder.iterdir())
    assert on_disk == stored.nbytes
    names = {f.name for f in folder.iterdir()}
    assert set(stored.files) == names
    assert {"head.safetensors", "localize.json"} <= names
    if weights.method.peft_config() is not None:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    else:
        assert "adapter_config.json" not in names
        assert ("adapter_model.safetensors" in names) == bool(weights.params)

    loaded = store.load("users/john/task", 1, expected_hashes=stored.files)
    assert loaded.method.name == method
    assert loaded.method.config == weights.method.config
    assert loaded.method.family() == weights.method.family()
    assert loaded.labels == weights.labels
    assert loaded.trainable_params == weights.trainable_params
    assert loaded.version == 1
    assert set(loaded.params) == set(weights.params)
    for name, tensor in weights.params.items():
        assert torch.equal(loaded.params[name], tensor.cpu()), name  # a store loads to the CPU
    for name, tensor in weights.head.items():
        assert torch.equal(loaded.head[name], tensor.cpu()), name

    engine = Engine(base)
    served = engine.adapter(("john", 1), lambda: loaded)
    before = _probabilities(engine, weights)
    after = _probabilities(engine, served)
    assert torch.equal(before, after)
    assert torch.allclose(after.sum(-1), torch.ones(len(QUERIES)), atol=1e-6)


ALL_SITES = ["query", "key", "value", "attention_output", "intermediate", "output"]

PEFT_CASES = [
    pytest.param("lora", {"sites": ALL_SITES, "r": 4}, id="lora-all-sites"),
    pytest.param("lora", {"layers": [-2, -1]}, id="lora-top-layers"),
    pytest.param("ia3", {"sites": ALL_SITES}, id="ia3-all-sites"),
    pytest.param("prompt_tuning", {"num_virtual_tokens": 5}, id="prompt_tuning"),
    pytest.param(
        "prefix_tuning",
        {"num_virtual_tokens": 4},
        id="prefix_tuning",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("method, options", PEFT_CASES)
def test_peft_loads_the_saved_folder_and_agrees(base, tiny_texts, tmp_path, method, options):
    import peft

    weights = _train(base, tiny_texts, method, options)
    # Non-trivial parameters everywhere (LoRA's B starts at zero), so any layout disagreement shows.
    generator = torch.Generator().manual_seed(1234)
    weights.params = {
        name: tensor + 0.05 * torch.randn(tensor.shape, generator=generator).to(tensor.device)
        for name, tensor in weights.params.items()
    }
    store = LocalAdapterStore(tmp_path)
    store.save("john", 1, weights)
    folder = store.path("john", 1)
    loaded = store.load("john", 1)

    peft_model = peft.PeftModel.from_pretrained(copy.deepcopy(base.hf_model()), str(folder))
    peft_model.eval()
    input_ids, mask = base.tokenize(QUERIES)
    assert int(mask.sum()) < mask.numel()  # the batch has padding, so masking is exercised too
    with torch.no_grad():
        hidden = peft_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    if method == "prompt_tuning":
        assert hidden.shape[1] == input_ids.shape[1] + options["num_virtual_tokens"]
        hidden = hidden[:, options["num_virtual_tokens"] :]
    assert hidden.shape[:2] == input_ids.shape
    pooled = base.pool(hidden, mask).float()
    head = {name: tensor.to(pooled.device) for name, tensor in loaded.head.items()}  # a store loads to the CPU
    peft_logits = (pooled @ head["weight"].T + head["bias"]).cpu()
    peft_log_probs = torch.log_softmax(peft_logits, dim=-1)

    ours = _probabilities(Engine(base), loaded)
    assert torch.allclose(torch.softmax(peft_logits, -1), ours, atol=1e-4)
    assert torch.allclose(peft_log_probs, ours.log(), atol=1e-4)

    # The adapter really changes the output: the frozen base with the same head gives other probabilities.
    with torch.no_grad():
        frozen = base.pool(base.hf_model()(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask).float()
    frozen_probs = torch.softmax(frozen @ head["weight"].T + head["bias"], -1).cpu()
    assert (frozen_probs - ours).abs().max() > 1e-3
