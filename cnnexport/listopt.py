"""One parser for every comma-separated option (``--batch 1,8``, ``--runtime ort,openvino``,
``--widths 1,2``, ``--mean 0.485,0.456,0.406``): split, convert, check, refuse with one line."""

from __future__ import annotations

from typing import Callable, TypeVar

from .errors import UsageError

T = TypeVar("T")


def parse_list(text: str | None, option: str, hint: str, *, item: Callable[[str], T] = str.strip,
               valid: Callable[[T], bool] = lambda _v: True, unique: bool = False) -> list[T]:
    """The comma-separated values of ``option`` in ``text``, each made by ``item`` (from the stripped
    part) and accepted by ``valid``; empty parts are skipped and, with ``unique``, repeats dropped.
    Anything else (no value, a value ``item`` cannot read, one ``valid`` refuses) raises UsageError
    "bad OPTION 'TEXT': HINT"."""
    try:
        values = [item(part.strip()) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(valid(v) for v in values):
        raise UsageError(f"bad {option} '{text}': {hint}")
    return list(dict.fromkeys(values)) if unique else values
