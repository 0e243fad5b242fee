"""What keeps the ``localize`` program's start-up short: a command that only reads the database must answer in
well under a second, and most of that time is spent importing (SQLAlchemy, pydantic, the table classes, typer).

- The cyclic garbage collector is paused while the program starts. Start-up builds over a hundred thousand objects
  that live until the process ends; the collector walked them about two hundred times while they were built and
  three times more at exit, a tenth of a database-only command's time. It resumes when the command starts its
  work (:func:`start_up_done`), and what start-up built is frozen: no later pass, the exit's included, walks it
  again. Only a run of the program pauses it (``app()``, as the ``localize`` script does), never a host that
  invokes the commands itself (typer's test runner).
- Each command's annotations are resolved once (:func:`resolve_annotations`): typer would evaluate every string
  annotation of every command four times on each run."""
from __future__ import annotations

import atexit
import gc
import inspect
from collections.abc import Callable

import typer

_collector_paused = False
_start_up_frozen = False


class LocalizeApp(typer.Typer):
    """Typer's app, run with the collector paused until the command starts its work."""

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        global _collector_paused
        if gc.isenabled():
            gc.disable()
            _collector_paused = True
        try:
            return super().__call__(*args, **kwargs)
        finally:  # a command that never started its work (--help, a usage error)
            if _collector_paused:
                _collector_paused = False
                gc.enable()


def start_up_done() -> None:
    """The command starts its work: the collector resumes, and skips every object start-up built from now on."""
    global _collector_paused, _start_up_frozen
    if _collector_paused:
        _collector_paused, _start_up_frozen = False, True
        gc.freeze()
        gc.enable()


def close_at_exit(close: Callable[[], object]) -> None:
    """Runs ``close`` as the program ends, before the interpreter's teardown, where start-up was frozen: frozen
    objects may still reach what the command opened then, and the teardown's last collections no longer free it.
    Elsewhere (a test runner invoking commands) the teardown is as usual and nothing is registered."""
    if _start_up_frozen:
        atexit.register(close)


def resolve_annotations(callback: object) -> None:
    """Replaces a command function's string annotations (``from __future__ import annotations``) by the objects
    they name, so typer reads objects instead of evaluating each string again."""
    if inspect.isfunction(callback) and any(isinstance(value, str) for value in callback.__annotations__.values()):
        callback.__annotations__ = inspect.get_annotations(callback, eval_str=True)
