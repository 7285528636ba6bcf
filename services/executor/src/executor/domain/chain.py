"""Where a run stands in its action chain, and where it goes next. Pure.

A chain is a tree: top-level steps, and under each ``if`` step a ``then`` and an ``else`` list.
A position is a *path* through it: ``(i,)`` is top-level step ``i``; ``(i, 0, j)`` is step ``j``
of the ``then`` list of the ``if`` at ``i``, ``(i, 1, j)`` of its ``else`` list; deeper branches
add two entries per level. Paths are plain tuples of ints, so the ``runs`` row stores one as a
JSON array and a retry resumes exactly where the run failed.

After the last step of a branch the run goes on after the ``if`` step that owns the branch; after
the last top-level step the chain is done (``None``).
"""

from __future__ import annotations

from collections.abc import Sequence

from automation_shared.contracts.rules import IfStep, Step

Path = tuple[int, ...]
THEN, ELSE = 0, 1


class BadPath(ValueError):
    """A stored path does not name a step of the pinned chain (a corrupted row, never user input)."""


def first(steps: Sequence[Step]) -> Path | None:
    """The first position of a chain; None for an empty one."""
    return (0,) if steps else None


def _list_at(steps: Sequence[Step], prefix: Path) -> Sequence[Step]:
    """The step list a path's last index points into."""
    current: Sequence[Step] = steps
    for at in range(0, len(prefix), 2):
        index, branch = prefix[at], prefix[at + 1]
        if not 0 <= index < len(current) or not isinstance(current[index], IfStep) or branch not in (THEN, ELSE):
            raise BadPath(f"{list(prefix)} does not lead to a branch of the chain")
        owner = current[index]
        assert isinstance(owner, IfStep)
        current = owner.then if branch == THEN else owner.otherwise
    return current


def step_at(steps: Sequence[Step], path: Path) -> Step:
    """The step at ``path``.

    Raises:
        BadPath: the path does not name a step.
    """
    if len(path) % 2 != 1:
        raise BadPath(f"{list(path)} is not a step position")
    siblings = _list_at(steps, path[:-1])
    if not 0 <= path[-1] < len(siblings):
        raise BadPath(f"{list(path)} is past the end of its step list")
    return siblings[path[-1]]


def following(steps: Sequence[Step], path: Path) -> Path | None:
    """The position after the step at ``path`` (its branch done: after the owning ``if``)."""
    while True:
        siblings = _list_at(steps, path[:-1])
        if path[-1] + 1 < len(siblings):
            return (*path[:-1], path[-1] + 1)
        if len(path) == 1:
            return None
        path = path[:-2]


def branch(steps: Sequence[Step], path: Path, *, holds: bool) -> Path | None:
    """Where the ``if`` step at ``path`` leads: its first ``then`` step when the condition holds,
    else its first ``else`` step; after the ``if`` when that list is empty."""
    step = step_at(steps, path)
    if not isinstance(step, IfStep):
        raise BadPath(f"{list(path)} is a {step.type!r} step, not an if")
    chosen = step.then if holds else step.otherwise
    return (*path, THEN if holds else ELSE, 0) if chosen else following(steps, path)


def step_id(step: Step, path: Path) -> str:
    """The step's id (the rules model fills every id; a path-derived one for older chains)."""
    return step.id or "step-" + ".".join(str(part + 1) for part in path)
