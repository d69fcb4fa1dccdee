"""Scheduled archive policies: a saved filter that makes a batch for approval when it is due.

A policy never acts by itself: on schedule it selects entries with the browse filter it
stores, and makes a draft batch, previewed on live state, that a librarian must approve
(with a second approval if the setting asks). Its notice period goes with the batch
(archive_app.scheduling.notices). A run is claimed by moving `next_run_at` with a conditional
update, so two schedulers never make two batches for one due run.
"""

from __future__ import annotations

import calendar
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone

from archive_app import audit
from archive_app.archive import batches
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.mirror import selectors
from archive_app.models import ArchivePolicy, Batch, BatchItem, BatchNotice

log = logging.getLogger(__name__)

SCHEDULER_USERNAME = "policy-scheduler"
MONTHS = {
    ArchivePolicy.Schedule.MONTHLY: 1,
    ArchivePolicy.Schedule.QUARTERLY: 3,
    ArchivePolicy.Schedule.YEARLY: 12,
}
# Browse parameters that are about the page, not the selection.
NOT_FILTERS = {"page", "csrfmiddlewaretoken"}


def normalise_filter(query: str | QueryDict) -> str:
    """The browse filter, validated, without empty values or paging, keys sorted.

    Raises selectors.InvalidSelection naming the bad (or unknown) fields, or ValueError for a
    filter with no condition of age, plays, category, tag or ids (a policy over every entry,
    or every entry of a state, is almost certainly a mistake).
    """
    if isinstance(query, str):
        query = QueryDict(query.strip().lstrip("?"))
    data = QueryDict(mutable=True)
    for key in sorted(query):
        values = [v.strip() for v in query.getlist(key) if v.strip()]
        if key not in NOT_FILTERS and values:
            data.setlist(key, values)
    filterset = selectors.entry_filterset(data=data)
    if not filterset.is_valid():
        raise selectors.InvalidSelection(filterset.errors)
    if not filterset.form.has_criterion():
        raise ValueError("has no condition of age, plays, category, tag or ids; choose at least one")
    return data.urlencode()


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def next_run_after(previous: datetime, schedule: str, now: datetime) -> datetime:
    """The first scheduled time after `now`: a scheduler that was down makes one batch, not one per missed run."""
    moment = previous
    while moment <= now:
        if schedule == ArchivePolicy.Schedule.WEEKLY:
            moment += timedelta(days=7)
        else:
            moment = add_months(moment, MONTHS[schedule])
    return moment


def scheduler_user() -> User:
    """The account policy batches are created by; it cannot sign in."""
    user, created = User.objects.get_or_create(username=SCHEDULER_USERNAME, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def policies_due(now: datetime | None = None):
    now = now or timezone.now()
    return ArchivePolicy.objects.filter(enabled=True, next_run_at__lte=now).order_by("next_run_at", "pk")


def policy_selection(policy: ArchivePolicy, now: datetime) -> tuple[list[str], bool]:
    """The entry ids the policy selects now, at most a batch's worth; and whether there were more.

    Entries already waiting in another batch (a draft, one held for its notice, one running) are
    left to it: their owners must not be warned twice, and the next run takes what is left.
    """
    try:
        normalise_filter(policy.filter_query)  # a policy saved before the rules were: no condition, a typo
    except ValueError as exc:
        raise selectors.InvalidSelection({"filter": [str(exc)]}) from None
    waiting = BatchItem.objects.filter(
        status__in=[BatchItem.Status.PENDING, BatchItem.Status.QUEUED, *BatchItem.ACTIVE]
    ).exclude(batch__status=Batch.Status.CANCELLED)
    entries = selectors.entry_list(data=QueryDict(policy.filter_query), now=now).exclude(
        id__in=waiting.values("entry_id")
    )
    limit = settings.ARCHIVE_MAX_BATCH_SIZE
    entry_ids = list(entries.values_list("id", flat=True)[: limit + 1])
    return entry_ids[:limit], len(entry_ids) > limit


def policy_run(
    policy: ArchivePolicy,
    *,
    now: datetime | None = None,
    execute: bool = False,
    kaltura: Kaltura | None = None,
    store: ArchiveStore | None = None,
) -> dict:
    """Make the policy's batch (a draft awaiting approval); without `execute` only report what it selects."""
    now = now or timezone.now()
    result: dict = {"policy": policy.name, "action": policy.action}
    try:
        entry_ids, capped = policy_selection(policy, now)
    except selectors.InvalidSelection as exc:
        # A filter can go stale (a category removed, say): report it, and try again next time.
        result["error"] = f"the policy's filter is no longer valid: {exc}"
        audit.record(
            "policy_run", dry_run=not execute, outcome="failed", message=result["error"], details={"policy": policy.pk}
        )
        return result
    result.update(entries=len(entry_ids), capped=capped)
    details = {"policy": policy.pk, "name": policy.name, "entries": len(entry_ids), "capped": capped}
    if not execute:
        audit.record("policy_run", username=SCHEDULER_USERNAME, dry_run=True, details=details)
        return result
    user = scheduler_user()
    with transaction.atomic():
        claimed = ArchivePolicy.objects.filter(pk=policy.pk, next_run_at=policy.next_run_at).update(
            next_run_at=next_run_after(policy.next_run_at, policy.schedule, now), last_run_at=now
        )
        if claimed != 1:
            result["skipped"] = "another scheduler run made this batch"
            return result
        if not entry_ids:
            audit.record("policy_run", user=user, dry_run=False, message="nothing selected", details=details)
            return result
        batch = batches.batch_create(
            user=user, action=policy.action, entry_ids=entry_ids, filter_query=policy.filter_query
        )
        BatchNotice.objects.create(batch=batch, policy=policy, notice_days=policy.notice_days)
        audit.record("policy_run", user=user, batch=batch, dry_run=False, details=details)
    result["batch"] = batch.pk
    try:
        batches.batch_preview(batch, user=user, kaltura=kaltura, store=store)
    except (KalturaError, StorageError, ImproperlyConfigured) as exc:
        # An unpreviewed batch must never be approved: discard it, and let the next tick try again.
        batches.batch_cancel(batch, user=user)
        ArchivePolicy.objects.filter(pk=policy.pk).update(next_run_at=policy.next_run_at)
        result["error"] = f"the preview could not read the live state: {exc}"
        audit.record("policy_run", user=user, batch=batch, dry_run=False, outcome="failed", message=result["error"])
    return result


def policies_run_due(
    *,
    now: datetime | None = None,
    execute: bool = False,
    kaltura: Kaltura | None = None,
    store: ArchiveStore | None = None,
) -> list[dict]:
    now = now or timezone.now()
    return [policy_run(policy, now=now, execute=execute, kaltura=kaltura, store=store) for policy in policies_due(now)]
