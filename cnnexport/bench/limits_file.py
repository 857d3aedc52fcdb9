"""A file of this CPU's measured limits (compute ceilings, memory bandwidth, cache roofs) per thread count,
named by ``CNNEXPORT_CPU_LIMITS``: bench, ``profile --roofline`` and the studies read a limit from it instead
of measuring it again (about 25 s each time), and add the ones it lacks. Measured once, it serves many runs on
one machine; a file measured on another CPU (model, cores, ISA) is replaced, never used. No torch."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from ..errors import UsageError

CPU_LIMITS_ENV = "CNNEXPORT_CPU_LIMITS"


def _identity() -> dict:
    from ..machine import cpu_facts

    facts = cpu_facts()
    return {k: facts[k] for k in ("cpu", "machine", "logical_cores", "isa")}


def _read(path: str, identity: dict) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{CPU_LIMITS_ENV}={path} is not a file of this CPU's limits ({type(exc).__name__}): "
                         "delete it or unset the variable") from None
    if not isinstance(data, dict) or data.get("machine") != identity or not isinstance(data.get("threads"), dict):
        return {}  # another CPU's (or an older layout): measured again, and replaced
    return data["threads"]


def cached_limit(threads: int, kind: str, measure: Callable[[], object]):
    """The limit ``kind`` at ``threads`` threads: from the ``CNNEXPORT_CPU_LIMITS`` file where it holds it for
    this CPU (a dict gains ``from_file``), else ``measure()``'s, added to the file. Unset: always measured."""
    from .._atomic import write_json

    path = os.environ.get(CPU_LIMITS_ENV)
    if not path:
        return measure()
    identity = _identity()
    saved = _read(path, identity).get(str(threads), {}).get(kind)
    if saved is not None:
        return {**saved, "from_file": path} if isinstance(saved, dict) else saved
    value = measure()
    by_threads = _read(path, identity)  # again: another process may have added limits meanwhile
    by_threads.setdefault(str(threads), {})[kind] = value
    try:
        write_json(path, {"machine": identity, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "threads": by_threads})
    except OSError as exc:
        raise UsageError(f"{CPU_LIMITS_ENV}={path} cannot be written ({exc.strerror or exc}): choose a writable "
                         "path or unset it") from None
    return value
