"""/healthz: is the service able to work? Database, Redis, RQ workers and the cron scheduler.

Load balancers and monitors call it without signing in, so it answers with booleans and
counts only: no host names, no error texts (those go to the log). 200 when everything is
alive, 503 otherwise. (The Health *page* is a different thing: the archive's invariants per entry.)
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rq import Queue, Worker
from rq.cron import CronScheduler
from rq.defaults import DEFAULT_CRON_SCHEDULER_TTL
from rq.scheduler import RQScheduler

log = logging.getLogger(__name__)

QUEUE_NAME = "default"
REDIS_TIMEOUT_SECONDS = 2
# A busy worker heartbeats at least this often (rq's worker_ttl, 420 s, plus the 60 s it adds to
# its key); an idle one blocks on the queue for worker_ttl - 15 s between heartbeats.
WORKER_STALE_SECONDS = 480


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def _redis() -> redis.Redis:
    # Its own short timeouts: a hung Redis must not hang the load balancer's probe.
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )


def _check_workers(conn: redis.Redis) -> dict:
    """Workers listening on the queue with a recent heartbeat, and whether one of them runs
    rq's scheduler (it holds the queue's scheduler lock), without which retries never happen."""
    now = time.time()
    workers = [
        worker
        for worker in Worker.all(queue=Queue(QUEUE_NAME, connection=conn))
        if worker.last_heartbeat and now - worker.last_heartbeat.timestamp() < WORKER_STALE_SECONDS
    ]
    retry_scheduler = bool(conn.exists(RQScheduler.get_locking_key(QUEUE_NAME)))
    return {"ok": bool(workers) and retry_scheduler, "count": len(workers), "retry_scheduler": retry_scheduler}


def _check_scheduler(conn: redis.Redis) -> dict:
    """`manage.py rqcron archive_app.cron`: it heartbeats at least every 60 s; rq forgets it after 120 s."""
    now = time.time()
    ages = [
        now - beat.timestamp()
        for scheduler in CronScheduler.all(conn)
        if (beat := scheduler.last_heartbeat) is not None
    ]
    alive = [age for age in ages if age < DEFAULT_CRON_SCHEDULER_TTL]
    return {
        "ok": bool(alive),
        "count": len(alive),
        "last_heartbeat_seconds": round(min(alive)) if alive else None,
    }


def _run(name: str, check, *args) -> dict:
    try:
        return check(*args)
    except Exception:
        log.exception("health check %s failed", name)
        return {"ok": False}


def _check_bucket() -> dict:
    """The archive bucket answers; versioning, Object Lock and the credentials' delete rights are reported, not
    failed (S3 round trips, so only when asked: `?checks=bucket`)."""
    from archive_app.lib.storage import ArchiveStore

    safety = ArchiveStore.from_settings().bucket_safety()
    return {
        "ok": True,
        "versioning": safety.versioning == "Enabled",
        "object_lock": safety.object_lock,
        "default_retention": safety.default_retention,
        "can_delete_versions": safety.can_delete_versions,
        "risks": len(safety.risks()),
    }


def _check_fixity() -> dict:
    """Copies whose last fixity audit or sample re-hash failed (recorded: no S3 request), and when the audit last
    ran. Only when asked (`?checks=fixity`): a damaged copy must page the archive's monitor, not take the site
    out of a load balancer."""
    from django.db.models import Max

    from archive_app.archive.fixity import failing_copies
    from archive_app.models import ArchiveCopy

    failed = failing_copies().count()
    last = ArchiveCopy.objects.aggregate(last=Max("fixity_checked_at"))["last"]
    age = round((time.time() - last.timestamp()) / 3600, 1) if last else None
    # Two missed runs of the scheduled audit: the copies are no longer being checked.
    overdue = ArchiveCopy.objects.exists() and (age is None or age > 2 * settings.FIXITY_AUDIT_INTERVAL_HOURS)
    return {"ok": failed == 0 and not overdue, "failed": failed, "last_audit_hours": age, "overdue": overdue}


CHECKS = ["database", "redis", "workers", "scheduler"]
OPTIONAL_CHECKS = ["bucket", "fixity"]


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """All checks, or those named in `?checks=database,redis`: a load balancer asks a web machine only
    what that machine needs, so a dead worker alerts the monitor without taking the site down."""
    wanted = [name for name in request.GET.get("checks", ",".join(CHECKS)).split(",") if name]
    if not wanted or set(wanted) - set(CHECKS + OPTIONAL_CHECKS):
        return JsonResponse({"error": f"checks: choose from {', '.join(CHECKS + OPTIONAL_CHECKS)}"}, status=400)
    checks = {}
    if "bucket" in wanted:
        checks["bucket"] = _run("bucket", _check_bucket)
    if "fixity" in wanted:
        checks["fixity"] = _run("fixity", _check_fixity)
    if "database" in wanted:
        checks["database"] = _run("database", _check_database)
    conn = _redis()
    try:
        redis_ok = _run("redis", lambda: {"ok": bool(conn.ping())})
        if "redis" in wanted:
            checks["redis"] = redis_ok
        for name, check in (("workers", _check_workers), ("scheduler", _check_scheduler)):
            if name in wanted:
                checks[name] = _run(name, check, conn) if redis_ok["ok"] else {"ok": False}
    finally:
        conn.close()
    healthy = all(check["ok"] for check in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return JsonResponse(body, status=200 if healthy else 503)
