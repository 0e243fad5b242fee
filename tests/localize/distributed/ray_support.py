"""Helpers of the Ray tests: small training arguments and a task with two users' labels."""
from __future__ import annotations

from localize.db.session import session_scope
from localize.demo_data import JANE, JOHN, LABELS, demo_rows
from localize.labels_io import LabelRow
from localize.services.labels import upsert_labels
from localize.services.tasks import create_task
from localize.training_args import TrainingArguments

# Small adapters that train in about a second: a linear head, and LoRA on the top layer only.
HEAD = TrainingArguments(method="head", max_epochs=3, method_options={"hidden": 0})
LORA_TOP = TrainingArguments(method="lora", max_epochs=2, method_options={"r": 2, "layers": [-1]})
# The default recipe, short: the task prior's LoRA on its default layers (one epoch), users' heads reading it.
DEFAULT_SHORT = TrainingArguments(max_epochs=3, prior_max_epochs=1)


def seed_task(runtime, rows_per_user: int = 60) -> None:  # noqa: ANN001
    """Task ``gold`` with John's and Jane's generated (opposite) labels."""
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="gold", labels=LABELS)
        data = demo_rows(rows_per_user, users=(JOHN, JANE))
        upsert_labels(session=session, task=task, rows=[LabelRow(line=i + 1, **r) for i, r in enumerate(data)])


def clone_adapter(runtime, *, task_name: str, source: str, names: list[str]) -> None:  # noqa: ANN001
    """Users ``names`` in ``task_name``, each with an active version holding ``source``'s adapter (stored again
    under the user's own key, as training would write it): many owners without training each."""
    from localize.services.adapters import active_version, load_weights, register_version, store_key
    from localize.services.tasks import get_task
    from localize.services.users import create_user, get_user

    with session_scope(runtime.database) as session:
        task = get_task(session=session, name=task_name)
        row = active_version(session=session, task=task, user=get_user(session=session, name=source))
        weights = load_weights(runtime=runtime, row=row)  # with its encoder, so the copies refer to it too
        for name in names:
            user = create_user(session=session, name=name)
            stored = runtime.store.save(store_key(task, user), 1, weights)
            register_version(session=session, task=task, user=user, weights=weights, stored=stored,
                             n_labels=row.n_labels, labels_updated_at=row.labels_updated_at, activate=True)
