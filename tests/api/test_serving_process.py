"""How a serving process runs: its start-up objects kept out of the collector's passes, and its engine passes side by
side with one thread each, where the settings ask for it (``localize serve`` does) and only there. Each server runs
in a fresh interpreter: a freeze, or torch's thread count, would otherwise stay with this test process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SERVER = textwrap.dedent("""
    import gc, json, sys, threading
    import torch
    from fastapi.testclient import TestClient
    from localize.settings import Settings
    from localize.api.app import create_app

    def pass_threads():  # engine passes run in threads the server starts after start-up
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        return seen[0]

    serving = sys.argv[2] == "serving"
    settings = Settings(home=sys.argv[1], admin_key="k" * 32, freeze_heap=serving,
                        engine_threads=1 if serving else None)
    threads = pass_threads()
    app = create_app(settings)
    before = gc.get_freeze_count()
    with TestClient(app) as client:
        after_start_up = gc.get_freeze_count()
        client.get("/health")
        app.state.runtime.base  # the first prediction would load it
        after_base = gc.get_freeze_count()
        passes = app.state.runtime.batcher._passes_in_flight
    print(json.dumps({"frozen": [before, after_start_up, after_base], "threads": [threads, pass_threads()],
                      "passes": passes}))
""")


def _start(tmp_path, how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SERVER, str(tmp_path), how], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_serving_process_freezes_what_start_up_and_the_base_model_built_and_runs_a_pass_per_core(tmp_path):
    started = _start(tmp_path, "serving")
    before, after_start_up, after_base = started["frozen"]
    assert before == 0
    assert after_start_up > 10_000  # the frameworks' modules and tables
    assert after_base > after_start_up  # and then the base model's modules
    assert started["threads"][1] == 1
    assert started["passes"] == len(os.sched_getaffinity(0))  # one single-threaded pass per core


def test_an_embedded_app_freezes_nothing_and_keeps_torchs_threads(tmp_path):
    started = _start(tmp_path, "embedded")
    assert started["frozen"] == [0, 0, 0]
    assert started["threads"][1] == started["threads"][0]
    assert started["passes"] == max(1, len(os.sched_getaffinity(0)) // started["threads"][0])


def test_localize_serve_runs_as_a_serving_process_unless_the_operator_chose_otherwise(monkeypatch):
    from localize.admin_key import AdminKey
    from localize.server import server_environment
    from localize.settings import Settings

    admin = AdminKey(key="k" * 32, source="a test")
    for name in ("LOCALIZE_ADMIN_KEY", "LOCALIZE_FREEZE_HEAP", "LOCALIZE_ENGINE_THREADS"):
        monkeypatch.setenv(name, "placeholder")  # so that each is restored after the test
        monkeypatch.delenv(name)
    server_environment(admin)
    settings = Settings()
    assert (settings.admin_key, settings.freeze_heap, settings.engine_threads) == ("k" * 32, True, 1)
    monkeypatch.setenv("LOCALIZE_FREEZE_HEAP", "false")
    monkeypatch.setenv("LOCALIZE_ENGINE_THREADS", "4")
    server_environment(admin)
    assert (Settings().freeze_heap, Settings().engine_threads) == (False, 4)


def test_ray_prediction_replicas_are_deployed_with_the_serving_defaults(monkeypatch, tmp_path):
    from localize import server
    from localize.settings import get_settings

    for name in ("LOCALIZE_ADMIN_KEY", "LOCALIZE_FREEZE_HEAP", "LOCALIZE_ENGINE_THREADS"):
        monkeypatch.setenv(name, "placeholder")  # so that each is restored after the test
        monkeypatch.delenv(name)
    monkeypatch.setenv("LOCALIZE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCALIZE_ADMIN_KEY", "k" * 32)
    get_settings.cache_clear()
    deployed_with = {}

    class Deployed(Exception):
        pass

    def use_ray(address, *, replicas, deploy):  # noqa: ANN001
        settings = get_settings()  # what deploy() hands the replicas (portable_settings)
        deployed_with.update(freeze_heap=settings.freeze_heap, engine_threads=settings.engine_threads)
        raise Deployed

    monkeypatch.setattr(server, "_use_ray", use_ray)
    try:
        server.run_server(host="127.0.0.1", port=0, with_worker=False, ray_address="local")
    except Deployed:
        pass
    finally:
        get_settings.cache_clear()
    assert deployed_with == {"freeze_heap": True, "engine_threads": 1}
