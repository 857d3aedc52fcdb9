"""The zoo's published metadata as data: ``catalog.json``, written from the registry by
``python scripts/model_catalog.py``, so that ``cnnexport list`` needs no torch and builds no model.
tests/test_catalog.py keeps the file equal to the registry. No torch."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PATH = Path(__file__).with_name("catalog.json")
FIELDS = ("name", "family", "input_size", "num_classes", "params", "macs", "source", "paper", "arxiv",
          "torchvision_compatible")


@dataclass(frozen=True)
class Entry:
    """One model's registry record without its builder."""

    name: str
    family: str
    input_size: tuple[int, int, int]
    num_classes: int
    params: int | None
    macs: int | None
    source: str
    paper: str
    arxiv: str
    torchvision_compatible: bool


@lru_cache(maxsize=1)
def _entries() -> tuple[Entry, ...]:
    return tuple(Entry(**{**d, "input_size": tuple(d["input_size"])}) for d in json.loads(PATH.read_text()))


def entries(pattern: str = "*") -> list[Entry]:
    """Catalogued models whose name matches a shell-style wildcard, sorted by name."""
    return sorted((e for e in _entries() if fnmatch.fnmatch(e.name, pattern)), key=lambda e: e.name)


def from_registry() -> list[dict]:
    """The live registry's records as catalog rows (imports the zoo, and torch)."""
    from .models import list_models, model_info

    return [{f: list(v) if isinstance(v := getattr(model_info(n), f), tuple) else v for f in FIELDS}
            for n in list_models()]
