"""The method registry, method configs and layer selection: no base model needed."""
from __future__ import annotations

import dataclasses

import pytest

import localize.adapters.base as registry
from localize.adapters import AdapterMethod, available_methods, get_method, make_method, register_method
from localize.adapters.base import BatchHooks, MethodConfig, check_layers
from localize.adapters.ia3 import IA3Config
from localize.adapters.lora import LoraConfig, LoraMethod
from localize.adapters.prefix_tuning import PrefixTuningConfig
from localize.adapters.prompt_tuning import PromptTuningConfig
from localize.base_model import BaseDims

DIMS = BaseDims(model_id="test/tiny", hidden_size=8, num_layers=4, num_heads=2, intermediate_size=16)
BUILTIN = ["head", "ia3", "lora", "lora_stack", "prefix_tuning", "prompt_tuning"]
HeadConfig = get_method("head").config_class


@pytest.fixture
def isolated_registry(monkeypatch):
    """A copy of the registry, so a test may register methods without leaking them into other tests."""
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))


def _toy_method_class():
    @dataclasses.dataclass
    class ToyConfig(MethodConfig):
        pass

    class ToyMethod(AdapterMethod):
        config_class = ToyConfig
        default_learning_rate = 1e-3

        @property
        def start_layer(self):
            return self.dims.num_layers

        def init_params(self, base, generator):
            return {}

        def hooks(self, params, *, training):
            return BatchHooks()

    return ToyMethod


def test_builtin_methods_are_registered():
    assert available_methods() == BUILTIN  # sorted
    for name in BUILTIN:
        assert get_method(name).name == name


def test_register_new_method(isolated_registry):
    toy = _toy_method_class()
    register_method("toy", toy)
    assert "toy" in available_methods()
    assert get_method("toy") is toy and toy.name == "toy"
    method = make_method("toy", None, DIMS)
    assert isinstance(method, toy) and method.start_layer == DIMS.num_layers


def test_register_refuses_duplicate_name(isolated_registry):
    with pytest.raises(ValueError, match=r"'lora' is already registered"):
        register_method("lora", _toy_method_class())
    assert get_method("lora") is LoraMethod  # the original stays
    assert LoraMethod.name == "lora"

    toy = _toy_method_class()
    register_method("toy", toy)
    with pytest.raises(ValueError, match=r"'toy' is already registered"):
        register_method("toy", _toy_method_class())
    assert get_method("toy") is toy


@pytest.mark.parametrize("call", [get_method, lambda name: make_method(name, {}, DIMS)])
def test_unknown_method_names_it_and_lists_available(call):
    with pytest.raises(ValueError) as info:
        call("dora")
    message = str(info.value)
    assert "'dora'" in message
    for name in BUILTIN:
        assert name in message


@pytest.mark.parametrize("name", BUILTIN)
def test_from_dict_rejects_unknown_options_naming_them(name):
    config_class = get_method(name).config_class
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus', 'rank_typo'\]"):
        config_class.from_dict({"bogus": 1, "rank_typo": 2})
    with pytest.raises(ValueError, match="bogus"):
        make_method(name, {"bogus": 1}, DIMS)


@pytest.mark.parametrize("name", BUILTIN)
def test_from_dict_defaults_and_round_trip(name):
    config_class = get_method(name).config_class
    assert config_class.from_dict(None) == config_class()
    assert config_class.from_dict({}) == config_class()
    config = config_class()
    assert config_class.from_dict(config.to_dict()) == config


def test_from_dict_applies_options():
    config = LoraConfig.from_dict({"r": 4, "alpha": 8.0, "sites": ["key"], "layers": [-1]})
    assert (config.r, config.alpha, config.sites, config.layers) == (4, 8.0, ["key"], [-1])
    method = make_method("lora", config.to_dict(), DIMS)
    assert method.layers == [3] and method.scale == 2.0


@pytest.mark.parametrize(
    "config_class, options, match",
    [
        (HeadConfig, {"hidden": -1}, r"hidden=-1"),
        (HeadConfig, {"dropout": 1.0}, r"dropout=1\.0"),
        (LoraConfig, {"r": 0}, r"r=0 must be >= 1"),
        (LoraConfig, {"r": -3}, r"r=-3"),
        (LoraConfig, {"alpha": 0}, r"alpha=0 must be > 0"),
        (LoraConfig, {"alpha": -1.5}, r"alpha=-1\.5"),
        (LoraConfig, {"dropout": 1.0}, r"dropout=1\.0 must be in \[0, 1\)"),
        (LoraConfig, {"dropout": -0.1}, r"dropout=-0\.1"),
        (LoraConfig, {"sites": ["qkv"]}, r"sites \['qkv'\]"),
        (LoraConfig, {"sites": []}, r"sites \[\] must be a non-empty subset"),
        (IA3Config, {"sites": ["key", "keys"]}, r"sites \['key', 'keys'\]"),
        (IA3Config, {"sites": []}, r"sites \[\] must be a non-empty subset"),
        (PromptTuningConfig, {"num_virtual_tokens": 0}, r"num_virtual_tokens=0 must be in 1\.\.128"),
        (PromptTuningConfig, {"num_virtual_tokens": 129}, r"num_virtual_tokens=129"),
        (PrefixTuningConfig, {"num_virtual_tokens": 0}, r"num_virtual_tokens=0 must be in 1\.\.128"),
        (PrefixTuningConfig, {"num_virtual_tokens": 200}, r"num_virtual_tokens=200"),
        (PrefixTuningConfig, {"init_std": 0.0}, r"init_std=0\.0 must be > 0"),
        (PrefixTuningConfig, {"init_std": -1}, r"init_std=-1"),
    ],
)
def test_config_rejects_bad_value_naming_it(config_class, options, match):
    with pytest.raises(ValueError, match=match):
        config_class(**options)
    with pytest.raises(ValueError, match=match):
        config_class.from_dict(options)


@pytest.mark.parametrize(
    "config_class, options",
    [
        (LoraConfig, {"r": 1, "alpha": 0.5, "dropout": 0.0, "sites": ["intermediate", "output"]}),
        (IA3Config, {"sites": ["attention_output"]}),
        (PromptTuningConfig, {"num_virtual_tokens": 128}),
        (PrefixTuningConfig, {"num_virtual_tokens": 1, "init_std": 1e-3}),
    ],
)
def test_config_accepts_boundary_values(config_class, options):
    config = config_class(**options)
    for key, value in options.items():
        assert getattr(config, key) == value


@pytest.mark.parametrize(
    "layers, expected",
    [
        (None, [0, 1, 2, 3]),
        ([0], [0]),
        ([-1], [3]),
        ([-4], [0]),
        ([-1, 0], [0, 3]),
        ([3, -1, 2], [2, 3]),  # duplicates collapse, result is sorted
    ],
)
def test_check_layers_resolves(layers, expected):
    assert check_layers(layers, 4) == expected


@pytest.mark.parametrize("layers", [[4], [-5], [0, 7], [], [100]])
def test_check_layers_rejects_out_of_range(layers):
    with pytest.raises(ValueError, match=r"not valid for a base with 4 layers"):
        check_layers(layers, 4)


@pytest.mark.parametrize("name", ["lora", "ia3", "prefix_tuning"])
def test_methods_validate_layers_against_the_base(name):
    with pytest.raises(ValueError, match=r"\[4\].*4 layers"):
        make_method(name, {"layers": [4]}, DIMS)
    method = make_method(name, {"layers": [-2, -1]}, DIMS)
    assert method.layers == [2, 3]
    assert method.start_layer == 2


def test_method_refuses_a_foreign_config():
    with pytest.raises(TypeError, match="LoraConfig"):
        LoraMethod(IA3Config(), DIMS)


def test_family_separates_shapes_and_groups_equal_configs():
    a = make_method("lora", {"r": 4}, DIMS)
    b = make_method("lora", {"r": 4}, DIMS)
    c = make_method("lora", {"r": 2}, DIMS)
    d = make_method("ia3", {}, DIMS)
    assert a.family() == b.family()
    assert a.family() != c.family()
    assert a.family() != d.family()


def test_peft_config_only_where_peft_can_express_it():
    assert make_method("head", {}, DIMS).peft_config() is None
    assert make_method("prefix_tuning", {"layers": [-1]}, DIMS).peft_config() is None
    for name in ["lora", "ia3", "prompt_tuning", "prefix_tuning"]:
        assert make_method(name, {}, DIMS).peft_config() is not None
