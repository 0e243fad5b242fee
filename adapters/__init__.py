"""Adapter methods: a registry and one module per method (after PEFT's ``tuners/<method>/``).

Adding a method means adding one module that subclasses :class:`AdapterMethod` and ends with
``register_method(...)``, then importing it below. Nothing else in localize branches on method names.
"""
from __future__ import annotations

# Importing registers them.
from localize.adapters import head, ia3, lora, lora_stack, prefix_tuning, prompt_tuning  # noqa: E402,F401
from localize.adapters.base import (
    AdapterMethod,
    BatchHooks,
    MethodConfig,
    available_methods,
    get_method,
    make_method,
    register_method,
)

__all__ = [
    "AdapterMethod",
    "BatchHooks",
    "MethodConfig",
    "available_methods",
    "get_method",
    "make_method",
    "register_method",
]
