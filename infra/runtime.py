"""Process settings every long-running role starts with.

Garbage collection: with CPython's default thresholds (a young-generation pass every 700
allocations, a full pass every 100 of those) a role that has imported SQLAlchemy, pydantic,
aiokafka and Litestar ran a full collection every few seconds under a rush, each walking
hundreds of thousands of objects: 70 to 110 ms with the process stopped, 300 to 400 ms of
pauses in 15 s of `make bench`'s waiting phase, and every request waiting on the decider or
the projector waited too (measured with `gc.callbacks`). Almost everything a request or a
batch allocates is freed by reference counting, so the collector can run far less often:
with these thresholds the same 15 s saw 45 to 115 ms of pauses, none above 65 ms.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collection() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
