"""The transformers-free BERT loader refuses, with the reason, any model it cannot reproduce exactly."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from localize.base_model import bundled_model_path
from localize.bert import UnsupportedModel, load_light_bert


def _copy_model(tmp_path, **config_changes):
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("changes, reason", [
    ({"model_type": "roberta"}, "model_type 'roberta'"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
    ({"hidden_act": "swish"}, "hidden_act 'swish'"),
    ({"num_hidden_layers": 7}, "missing"),  # a layer the weights do not have
])
def test_models_it_cannot_reproduce_are_refused(tmp_path, changes, reason):
    with pytest.raises(UnsupportedModel, match=reason):
        load_light_bert(_copy_model(tmp_path, **changes))


def test_loads_the_bundled_weights_under_hugging_face_names(base):
    model = load_light_bert(bundled_model_path())
    names = dict(model.named_parameters())
    assert "encoder.layer.5.attention.self.query.weight" in names
    reference = dict(base.hf_model().named_parameters())
    for name, tensor in names.items():
        assert torch.equal(tensor, reference[name].cpu()), name
