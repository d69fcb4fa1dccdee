"""Periodic jobs, run by `python manage.py rqcron archive_app.cron` (rq's built-in cron)."""

from django.conf import settings
from rq import cron

from archive_app.jobs import sync_kaltura_job

# Items count as stale only an hour or more after their last heartbeat; checking every 10 minutes is plenty.
STALE_ITEMS_INTERVAL_SECONDS = 600

cron.register(
    sync_kaltura_job,
    queue_name="default",
    kwargs={"kind": "incremental"},
    interval=settings.SYNC_INTERVAL_MINUTES * 60,
    job_timeout=6 * 3600,
    name="sync_kaltura",
)

from archive_app.jobs import run_policies_job  # noqa: E402

cron.register(
    run_policies_job,
    queue_name="default",
    interval=settings.POLICY_INTERVAL_MINUTES * 60,
    job_timeout=3 * 3600,
    name="run_policies",
)

from archive_app.jobs import auto_restore_job, restore_poll_job  # noqa: E402

cron.register(
    restore_poll_job,
    queue_name="default",
    interval=settings.ARCHIVE_RESTORE_POLL_MINUTES * 60,
    job_timeout=600,
    name="restore_poll",
)
cron.register(
    auto_restore_job,
    queue_name="default",
    interval=settings.ARCHIVE_RESTORE_POLL_MINUTES * 60,
    job_timeout=3600,
    name="auto_restore",
)

from archive_app.jobs import release_stale_items_job  # noqa: E402

cron.register(
    release_stale_items_job,
    queue_name="default",
    interval=STALE_ITEMS_INTERVAL_SECONDS,
    job_timeout=600,
    name="release_stale_items",
)

from archive_app.jobs import audit_ip_retention_job  # noqa: E402

cron.register(
    audit_ip_retention_job,
    queue_name="default",
    interval=24 * 3600,
    job_timeout=3 * 3600,
    name="audit_ip_retention",
)

from archive_app.jobs import fixity_audit_job  # noqa: E402

cron.register(
    fixity_audit_job,
    queue_name="default",
    interval=settings.FIXITY_AUDIT_INTERVAL_HOURS * 3600,
    job_timeout=6 * 3600,
    name="fixity_audit",
)
