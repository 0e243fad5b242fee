"""Short collector pauses in a long-running server.

Python's cyclic collector walks every tracked object of its oldest generation on each full pass. A server holds
several hundred thousand of them from start-up alone (modules, classes, the frameworks' tables, the base model's
modules), so under load each full pass stalls every request for 150-300 ms on a small CPU, every few seconds
(reports/speed.md, "HTTP latency under open load"). Those objects live as long as the process: ``gc.freeze`` moves them out of
the collector's sight, and later full passes walk only what was made since. The price is that cyclic garbage among
the frozen objects is never collected, and start-up leaves almost none once a collection has run first.

``localize serve`` turns this on (``LOCALIZE_FREEZE_HEAP``); a process that builds many apps (a test run) leaves it
off, since each freeze would keep that app's cycles for good.
"""
from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger(__name__)


def freeze_long_lived_objects(reason: str) -> int:
    """Collects once, then moves every object still alive out of later collections; returns how many are frozen."""
    began = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("%s: %d long-lived objects kept out of the collector's passes (%.0f ms)",
                reason, frozen, 1000 * (time.perf_counter() - began))
    return frozen
