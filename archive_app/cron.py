"""Periodic jobs, run by `python manage.py rqcron archive_app.cron` (rq's built-in cron)."""

from django.conf import settings
from rq import cron

from archive_app.jobs import sync_kaltura_job

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

from archive_app.jobs import fixity_audit_job  # noqa: E402

cron.register(
    fixity_audit_job,
    queue_name="default",
    interval=settings.FIXITY_AUDIT_INTERVAL_HOURS * 3600,
    job_timeout=6 * 3600,
    name="fixity_audit",
)
