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
from dataclasses import dataclass, field
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
from archive_app.models import ArchivePolicy, AuditEvent, Batch, BatchItem, BatchNotice

log = logging.getLogger(__name__)

SCHEDULER_USERNAME = "policy-scheduler"
MONTHS: dict[str, int] = {
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


def policy_save(policy: ArchivePolicy, *, user, filter_query: str, changed: dict, selected: int) -> ArchivePolicy:
    """Create or change a policy (its form's fields set on `policy`, unsaved) with its normalised filter; audited
    with what changed and how many entries it selects now."""
    action = "policy_change" if policy.pk else "policy_create"
    if policy.filter_query != filter_query:
        changed = {**changed, "filter_query": filter_query}
    policy.filter_query = filter_query
    if policy.created_by_id is None:
        policy.created_by = user
    policy.save()
    audit.record(
        action,
        user=user,
        dry_run=False,
        message=policy.name,
        details=changed | {"policy": policy.pk, "selected": selected},
    )
    return policy


def policy_delete(policy: ArchivePolicy, *, user) -> None:
    """Delete a policy; its batches stay (they keep it as SET_NULL)."""
    policy_id = policy.pk
    policy.delete()
    audit.record(
        "policy_delete",
        user=user,
        dry_run=False,
        message=policy.name,
        details={"policy": policy_id, "filter": policy.filter_query},
    )


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


@dataclass(frozen=True)
class PolicyPlan:
    """What a run of the policy would do now: the entries it would put in a draft batch (or why it cannot).

    It changes nothing: shown and audited as it is, it is the dry run; policy_run performs it.
    """

    policy: ArchivePolicy
    now: datetime
    entry_ids: list[str] = field(default_factory=list)
    capped: bool = False
    error: str = ""

    def result(self) -> dict:
        result: dict = {"policy": self.policy.name, "action": self.policy.action}
        if self.error:
            result["error"] = self.error
        else:
            result.update(entries=len(self.entry_ids), capped=self.capped)
        return result

    def details(self) -> dict:
        return {
            "policy": self.policy.pk,
            "name": self.policy.name,
            "entries": len(self.entry_ids),
            "capped": self.capped,
        }

    def record_error(self, *, dry_run: bool) -> None:
        audit.record(
            "policy_run",
            dry_run=dry_run,
            outcome=AuditEvent.Outcome.FAILED,
            message=self.error,
            details={"policy": self.policy.pk},
        )

    def record_dry_run(self) -> dict:
        """Audit the plan as the dry run it is; returns what it would do."""
        if self.error:
            self.record_error(dry_run=True)
        else:
            audit.record("policy_run", username=SCHEDULER_USERNAME, dry_run=True, details=self.details())
        return self.result()


def policy_plan(policy: ArchivePolicy, *, now: datetime | None = None) -> PolicyPlan:
    """The plan of one run of the policy at `now` (it need not be due)."""
    now = now or timezone.now()
    try:
        entry_ids, capped = policy_selection(policy, now)
    except selectors.InvalidSelection as exc:
        # A filter can go stale (a category removed, say): report it, and try again next time.
        return PolicyPlan(policy, now, error=f"the policy's filter is no longer valid: {exc}")
    return PolicyPlan(policy, now, entry_ids, capped)


def policies_plan(*, now: datetime | None = None) -> list[PolicyPlan]:
    """The plans of the policies due at `now`."""
    now = now or timezone.now()
    return [policy_plan(policy, now=now) for policy in policies_due(now)]


def policy_run(plan: PolicyPlan, *, kaltura: Kaltura | None = None, store: ArchiveStore | None = None) -> dict:
    """Make the plan's draft batch, awaiting approval, previewed on live state.

    Before: the policy's next run is still the one the plan was made for. After: it has moved on, and the
    batch holds the plan's entries (or, when the preview could not read live state, the batch is cancelled and
    the run is due again). A plan whose run another scheduler took makes nothing.
    """
    policy, now = plan.policy, plan.now
    result = plan.result()
    if plan.error:
        plan.record_error(dry_run=False)
        return result
    details = plan.details()
    user = scheduler_user()
    with transaction.atomic():
        claimed = ArchivePolicy.objects.filter(pk=policy.pk, next_run_at=policy.next_run_at).update(
            next_run_at=next_run_after(policy.next_run_at, policy.schedule, now), last_run_at=now
        )
        if claimed != 1:
            result["skipped"] = "another scheduler run made this batch"
            return result
        if not plan.entry_ids:
            audit.record("policy_run", user=user, dry_run=False, message="nothing selected", details=details)
            return result
        batch = batches.batch_create(
            user=user, action=policy.action, entry_ids=plan.entry_ids, filter_query=policy.filter_query
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
        audit.record(
            "policy_run",
            user=user,
            batch=batch,
            dry_run=False,
            outcome=AuditEvent.Outcome.FAILED,
            message=result["error"],
        )
    return result
