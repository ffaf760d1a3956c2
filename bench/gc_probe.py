"""Loaded into a benchmark's proxy as a callback: records the interpreter's garbage-collection pauses
(start on the monotonic clock, seconds, generation, objects collected) and serves them at
`GET /bench/gc-pauses` (each read returns and forgets what was recorded), so a benchmark can tell which
requests a collection landed in. With BENCH_GC_GARBAGE=1 it also keeps what each collection found
(`gc.DEBUG_SAVEALL`) and serves the count of each type at `GET /bench/gc-garbage` (read and forget):
which objects a route leaves in reference cycles."""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

_pauses: list[tuple[float, float, int, int]] = []
_started: list[float] = []
_garbage: Counter[str] = Counter()
_KEEP_GARBAGE = os.environ.get("BENCH_GC_GARBAGE") == "1"  # a diagnosis: memory grows with what it keeps
_counted = [0]  # entries of gc.garbage already counted


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.monotonic())
        return
    if _started:
        start = _started.pop()
        _pauses.append((start, time.monotonic() - start, int(info.get("generation", -1)),
                        int(info.get("collected", 0))))
    if _KEEP_GARBAGE and len(gc.garbage) > _counted[0]:
        # kept, not cleared: cleared objects would be unreachable again and found again by the next collection
        _garbage.update(f"{type(found).__module__}.{type(found).__qualname__}" for found in gc.garbage[_counted[0]:])
        _counted[0] = len(gc.garbage)


class GcProbe(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        from litellm.proxy.proxy_server import app

        if _on_gc in gc.callbacks:
            return
        gc.callbacks.append(_on_gc)
        if _KEEP_GARBAGE:
            gc.set_debug(gc.DEBUG_SAVEALL)

        @app.get("/bench/gc-pauses")
        async def gc_pauses() -> list[tuple[float, float, int, int]]:
            taken = list(_pauses)
            del _pauses[:len(taken)]
            return taken

        @app.get("/bench/gc-garbage")
        async def gc_garbage() -> dict[str, int]:
            taken = dict(_garbage.most_common(60))
            _garbage.clear()
            return taken

        app.router.routes[0:0] = [app.router.routes.pop(), app.router.routes.pop()]  # ahead of the catch-alls


probe = GcProbe()
