"""RQ entry points: plain arguments in, a service function called, nothing else."""

from __future__ import annotations

import logging

from archive_app import sync
from archive_app.kaltura import Kaltura

log = logging.getLogger(__name__)


def sync_kaltura_job(kind: str = "incremental") -> dict:
    """The scheduled mirror refresh: changed entries, then recent plays (or a full pass)."""
    kaltura = Kaltura.from_settings()
    try:
        if kind == "full":
            runs = [sync.sync_full(kaltura)]
        else:
            runs = [sync.sync_incremental(kaltura), sync.sync_plays(kaltura)]
    except sync.SyncBusy as busy:
        # Another worker is already on it; the next schedule will catch up.
        log.info("%s", busy)
        return {"skipped": str(busy)}
    return {run.kind: {"seen": run.seen, "created": run.created, "updated": run.updated} for run in runs}
