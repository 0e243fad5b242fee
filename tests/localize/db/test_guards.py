"""The flush guard: no door can commit a string that could not be read back and answered."""
from __future__ import annotations

import pytest
from sqlmodel import Session, select

from localize.db.models import Job, Task
from localize.errors import ValidationError


def test_a_row_holding_a_lone_surrogate_or_nul_is_never_committed(runtime) -> None:
    with Session(runtime.database) as session:
        session.add(Task(name="surrogate-task", labels=["a\ud800", "b"]))
        with pytest.raises(ValidationError, match=r"task.labels holds a lone surrogate U\+D800"):
            session.commit()
    with Session(runtime.database) as session:
        assert session.exec(select(Task)).all() == []
        task = Task(name="fine", labels=["a", "b"])
        session.add(task)
        session.commit()
        session.add(Job(task_id=task.id, metrics={"note": "ok", "nested": ["bad\x00"]}))
        with pytest.raises(ValidationError, match=r"job.metrics holds a NUL character"):
            session.commit()
        session.rollback()
        task.description = "changed\x00"
        with pytest.raises(ValidationError, match="task.description"):
            session.commit()
    with Session(runtime.database) as session:
        assert [(row.name, row.description) for row in session.exec(select(Task))] == [("fine", "")]
        assert session.exec(select(Job)).all() == []
