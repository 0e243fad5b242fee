"""Shared fixtures: the bundled base model (loaded once) and a tiny two-user finance data set."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def base():
    """The bundled all-MiniLM-L6-v2, shared by every test (as the server shares it by every user)."""
    from localize.base_model import get_base_model

    return get_base_model()


@pytest.fixture
def tiny_texts():
    """``(texts, john_labels, jane_labels, label_set)``: 24 finance texts; Jane labels each the opposite of John."""
    vendors = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises"]
    places = ["the pizzeria", "grandma's house", "the cinema", "the beach bar", "the zoo", "the bakery"]
    work = [f"Invoice {100 + i} from {v} for office printer paper" for i, v in enumerate(vendors)]
    work += [f"Quarterly VAT payment for the company, supplier {v}" for v in vendors]
    home = [f"Dinner with my family at {p}" for p in places]
    home += [f"Birthday present for my sister, bought at {p}" for p in places]
    texts, john = [], []
    for w, h in zip(work, home):  # interleaved, so any prefix of the data has both classes
        texts += [w, h]
        john += ["work", "personal"]
    opposite = {"work": "personal", "personal": "work"}
    return texts, john, [opposite[label] for label in john], ["personal", "work"]


@pytest.fixture
def make_runtime(tmp_path_factory):
    """``make_runtime(**settings)``: a Runtime on a fresh home (SQLite file at head, local adapter store); every
    runtime shares the process's one base model."""
    from localize.runtime import Runtime
    from localize.settings import Settings

    made = []

    def make(**overrides):
        values = {"home": tmp_path_factory.mktemp("home"), "admin_key": "k", **overrides}
        runtime = Runtime(Settings(**values))
        runtime.upgrade_database()
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.database.dispose()


@pytest.fixture
def runtime(make_runtime):
    """A Runtime on a fresh temporary home with its database at head."""
    return make_runtime()
