"""What services need beyond a database session: settings, the adapter store and, loaded lazily on first
use, the shared base model, the serving engine and the activation cache."""
from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine as DatabaseEngine

from localize.db.session import get_engine, upgrade_database
from localize.settings import Settings, get_settings

if TYPE_CHECKING:  # torch comes with these; they load on first use, so database-only commands start fast
    from localize.activations import ActivationCache
    from localize.base_model import BaseModel
    from localize.batcher import MicroBatcher
    from localize.engine import Engine
    from localize.store import AdapterStore


class Runtime:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._lock = threading.Lock()

    @cached_property
    def database(self) -> DatabaseEngine:
        return get_engine(self.settings.resolved_database_url)

    def upgrade_database(self) -> None:
        upgrade_database(self.settings.resolved_database_url)

    @cached_property
    def store(self) -> AdapterStore:
        from localize.store import open_store

        return open_store(self.settings.resolved_adapter_store, self.settings.adapter_store_options)

    @property
    def base(self) -> BaseModel:
        from localize.base_model import get_base_model

        with self._lock:
            fresh = not self.base_loaded
            base = get_base_model(
                self.settings.base_model,
                quantization=self.settings.quantization,
                device=self.settings.device,
                max_seq_length=self.settings.max_seq_length,
            )
        if fresh and self.settings.freeze_heap:  # its modules live as long as the process
            from localize.heap import freeze_long_lived_objects

            freeze_long_lived_objects("the base model loaded")
        return base

    @property
    def base_loaded(self) -> bool:
        """Whether the base model is already in memory (readiness reports it without loading it)."""
        from localize.base_model import _shared, base_model_key

        settings = self.settings
        return base_model_key(settings.base_model, settings.quantization, settings.device, settings.max_seq_length) in _shared

    @cached_property
    def engine(self) -> Engine:
        from localize.engine import Engine

        return Engine(self.base, capacity=self.settings.resident_adapters)

    @cached_property
    def remote_predictor(self):  # noqa: ANN201
        """The Ray Serve prediction replicas (``LOCALIZE_SERVING=ray``); connects on first use."""
        from localize.distributed.predictor import RayPredictor

        return RayPredictor(self.settings)

    @cached_property
    def batcher(self) -> MicroBatcher:
        from localize.batcher import MicroBatcher, passes_for_cores

        # On a GPU the passes queue on one device anyway: a second only collects while the first computes.
        on_gpu = self.engine.base.device.type == "cuda"
        passes = self.settings.batch_passes or (2 if on_gpu else passes_for_cores(self.settings.engine_threads))
        return MicroBatcher(self.engine, window=self.settings.batch_window_ms / 1000,
                            max_rows=self.settings.batch_max_rows, passes=passes)

    @cached_property
    def activation_cache(self) -> ActivationCache:
        from localize.activations import ActivationCache

        return ActivationCache()
