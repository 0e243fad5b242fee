"""Process trees of servers the end-to-end tests start (Linux /proc): what a stop must leave behind is nothing."""
from __future__ import annotations

from pathlib import Path


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    children, tree, todo = _children(), set(), [pid]
    while todo:
        current = todo.pop()
        tree.add(current)
        todo += children.get(current, [])
    return tree


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has ended; only its parent's reaping is missing)."""
    living = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            living.add(pid)
    return living
