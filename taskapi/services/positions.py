"""Manual order with fractional indexing: a move writes one row.

Positions are strings that sort by their bytes (``fractional_indexing``'s base-62 keys); a
key between two neighbours always exists. Keys grow when items keep landing on one spot; a
key longer than ``MAX_KEY`` characters renumbers its scope first (rare, and internal: the
order does not change, only the keys).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fractional_indexing import generate_key_between, generate_n_keys_between
from sqlalchemy import ColumnElement, select, tuple_, update
from sqlalchemy.orm import Session as DbSession

MAX_KEY = 100  # the columns hold 255


def spread(count: int, after: str | None = None) -> list[str]:
    """``count`` short keys in order, after ``after`` (renumbering and migrations)."""
    return [str(key) for key in generate_n_keys_between(after, None, count)]


def before(first: str | None) -> str:
    """The key of an item put first, before ``first`` (None: the scope is empty)."""
    return str(generate_key_between(None, first))


def place(
    db: DbSession,
    model: Any,
    scope: Sequence[ColumnElement[bool]],
    after: Any | None,
    reserve: Callable[[int], int],
) -> str:
    """The key of an item put right after ``after`` (a row of ``model``; None: first) among
    the rows of ``scope``, which must leave out the item being placed. ``reserve(n)`` hands
    out n change numbers (the first), for rows a renumbering changes."""
    for _ in range(2):
        key = _between_neighbours(db, model, scope, after)
        if key is not None and len(key) <= MAX_KEY:
            return key
        _renumber(db, model, scope, reserve)
        if after is not None:
            db.refresh(after, ["position"])
    raise RuntimeError("renumbering did not make room")  # unreachable: fresh keys are short


def _between_neighbours(
    db: DbSession, model: Any, scope: Sequence[ColumnElement[bool]], after: Any | None
) -> str | None:
    """A key between ``after`` and its successor, or None when the two keys are equal."""
    query = select(model.position).where(*scope).order_by(model.position, model.id).limit(1)
    if after is None:
        return before(db.scalar(query))
    successor = db.scalar(
        query.where(tuple_(model.position, model.id) > tuple_(after.position, after.id))
    )
    if successor == after.position:
        return None
    return str(generate_key_between(after.position, successor))


def _renumber(
    db: DbSession, model: Any, scope: Sequence[ColumnElement[bool]], reserve: Callable[[int], int]
) -> None:
    """Fresh short keys for every row of the scope, in their current order. Each row is a
    new version with a new change number, so synced copies learn the new keys."""
    ids = db.scalars(select(model.id).where(*scope).order_by(model.position, model.id)).all()
    first = reserve(len(ids))
    for index, (row_id, key) in enumerate(zip(ids, spread(len(ids)), strict=True)):
        db.execute(
            update(model)
            .where(model.id == row_id)
            .values(position=key, version=model.version + 1, change_seq=first + index)
            .execution_options(synchronize_session=False)
        )
    db.expire_all()
