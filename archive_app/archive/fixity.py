"""Fixity: is every recorded copy still, bit for bit, what we archived? (issue 15; NDSA "fixity checked").

Two checks, both dry runs unless `execute`:
- the audit (`audit_fixity`), for every copy, without restoring anything: ONE HeadObject of the copy's key asks
  S3 for the current version with the full-object CRC32 it stored and validated at upload. A healthy copy is the
  current version, with the recorded VersionId, size, storage class and CRC32. Anything else is a failure: a
  version written over ours from outside the app, our version deleted (or hidden by a delete marker), a changed
  class. Only then a second HEAD, of the recorded version, says which of these it is.
- the sample re-hash (`rehash_sample`): within a monthly byte budget, the copies longest without a full read are
  restored (Glacier, at FIXITY_REHASH_TIER) and read in full, the SHA-256 compared with the one computed on the
  stream at archive time. The rotation reaches every copy once per FIXITY_REHASH_YEARS_* if the budget allows;
  the command says when it does not.
Each check is an audit event; a failure stays flagged on the copy (Health page, /healthz?checks=fixity) and is
e-mailed to the archive admins.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMessage
from django.db.models import F, Q, Sum

from archive_app import audit
from archive_app.lib.storage import ARCHIVE_CLASSES, ArchiveStore, HashingReader, StorageError, VersionHead
from archive_app.mirror import costs
from archive_app.models import ArchiveCopy, AuditEvent
from archive_app.roles import ARCHIVE_ADMINS

log = logging.getLogger(__name__)

AUDIT_ACTION = "fixity_check"
REHASH_ACTION = "fixity_rehash"
ALARM_ACTION = "fixity_alarm"
CHUNK = 1000  # copies read, checked and recorded together
READ_SIZE = 1024 * 1024


@dataclass
class CheckResult:
    copy: ArchiveCopy
    problems: list[str]
    seen: VersionHead | None = None
    requests: int = 1

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class AuditSummary:
    checked: int = 0
    passed: int = 0
    failed: int = 0
    requests: int = 0
    failures: list[CheckResult] = field(default_factory=list)


def check_copy(store: ArchiveStore, copy: ArchiveCopy) -> CheckResult:
    """Compare what S3 holds at the copy's key with the record: one HEAD when all is well, two when not."""
    if copy.bucket != store.bucket:
        return CheckResult(
            copy, [f"recorded in bucket {copy.bucket}, the app uses {store.bucket}: not checked"], requests=0
        )
    current = store.head_checksum(copy.key)
    recorded = copy.version_id or None
    if recorded is None or (current is not None and current.version_id == recorded):
        if current is None:
            return CheckResult(copy, ["the object is gone from the bucket (deleted)"])
        return CheckResult(copy, _differences(copy, current), seen=current)
    # Not the current version: look at ours, to say what happened.
    ours = store.head_checksum(copy.key, recorded)
    if ours is None:
        return CheckResult(copy, [f"the recorded version {recorded} is gone (deleted)"], seen=current, requests=2)
    problems = []
    if current is None:
        problems.append(f"a delete marker hides the recorded version {recorded} (deleted outside the app)")
    else:
        problems.append(
            f"a new version {current.version_id} ({current.size} bytes, {current.storage_class}) was written over "
            "the copy (outside the app)"
        )
    return CheckResult(copy, problems + _differences(copy, ours), seen=ours, requests=2)


def _differences(copy: ArchiveCopy, seen: VersionHead) -> list[str]:
    problems = []
    if seen.size != copy.size_bytes:
        problems.append(f"size is {seen.size} bytes, recorded {copy.size_bytes}")
    if seen.storage_class != copy.storage_class:
        problems.append(f"storage class is {seen.storage_class}, recorded {copy.storage_class}")
    if copy.crc32 and seen.crc32 != copy.crc32:
        problems.append(f"S3's CRC32 is {seen.crc32 or 'absent'}, recorded {copy.crc32}")
    return problems


def audit_fixity(
    *,
    execute: bool = False,
    store: ArchiveStore | None = None,
    copies=None,
    now: datetime | None = None,
    username: str = audit.SYSTEM_USERNAME,
) -> AuditSummary:
    """Check every copy (or `copies`). Dry run: the same S3 reads and audit events (marked dry run), nothing
    recorded on the copies and no e-mail. Execute: each copy's result recorded; failures e-mailed."""
    store = store or ArchiveStore.from_settings()
    now = now or datetime.now(UTC)
    copies = (copies if copies is not None else ArchiveCopy.objects.all()).order_by("id")
    summary = AuditSummary()
    calls_before = sum(store.calls.values())
    with ThreadPoolExecutor(max_workers=settings.FIXITY_CONCURRENCY, thread_name_prefix="fixity") as pool:
        last_id = 0
        while chunk := list(copies.filter(id__gt=last_id)[:CHUNK]):
            last_id = chunk[-1].id
            results = list(pool.map(lambda copy: _check_safely(store, copy), chunk))
            _record_chunk(results, execute=execute, now=now, username=username)
            summary.checked += len(results)
            for result in results:
                if result.ok:
                    summary.passed += 1
                else:
                    summary.failed += 1
                    summary.failures.append(result)
    summary.requests = sum(store.calls.values()) - calls_before
    if execute and summary.failures:
        alarm(summary.failures, kind="audit", username=username)
    return summary


def _check_safely(store: ArchiveStore, copy: ArchiveCopy) -> CheckResult:
    try:
        return check_copy(store, copy)
    except StorageError as exc:
        # Access denied, S3 down: a check that could not be made is a failure, never a pass.
        return CheckResult(copy, [f"could not be checked: {exc}"])


def _record_chunk(results: list[CheckResult], *, execute: bool, now: datetime, username: str) -> None:
    events = []
    for result in results:
        copy, seen = result.copy, result.seen
        events.append(
            {
                "action": AUDIT_ACTION,
                "entry_id": copy.entry_id,
                "outcome": AuditEvent.Outcome.OK if result.ok else AuditEvent.Outcome.FAILED,
                "message": "fixity ok" if result.ok else "; ".join(result.problems),
                "details": {
                    "copy": copy.id,
                    "key": copy.key,
                    "version_id": copy.version_id,
                    "recorded": {"size": copy.size_bytes, "storage_class": copy.storage_class, "crc32": copy.crc32},
                    "seen": None
                    if seen is None
                    else {
                        "version_id": seen.version_id,
                        "size": seen.size,
                        "storage_class": seen.storage_class,
                        "crc32": seen.crc32,
                    },
                    "problems": result.problems,
                },
            }
        )
        copy.fixity_checked_at, copy.fixity_ok, copy.fixity_problem = now, result.ok, "; ".join(result.problems)
    audit.record_many(events, dry_run=not execute, username=username)
    if execute:
        ArchiveCopy.objects.bulk_update(
            [result.copy for result in results], ["fixity_checked_at", "fixity_ok", "fixity_problem"]
        )


# --- alarms ----------------------------------------------------------------------------------------------


def failing_copies():
    """Copies whose last audit or re-hash failed: the alarm stays until a later check passes."""
    return ArchiveCopy.objects.filter(Q(fixity_ok=False) | Q(rehash_ok=False)).order_by("id")


def admin_emails() -> list[str]:
    admins = User.objects.filter(Q(is_superuser=True) | Q(groups__name=ARCHIVE_ADMINS), is_active=True)
    return sorted({email for email in admins.values_list("email", flat=True) if email})


def alarm(failures: list[CheckResult], *, kind: str, username: str = audit.SYSTEM_USERNAME) -> int:
    """E-mail the archive admins the failed copies; an audit event says who was told (or that nobody could be)."""
    recipients = admin_emails()
    lines = [
        f"{result.copy.entry_id}\ts3://{result.copy.bucket}/{result.copy.key} (version "
        f"{result.copy.version_id or '-'}): {'; '.join(result.problems)}"
        for result in failures
    ]
    body = (
        f"The fixity {kind} found {len(failures)} archive copies that are not what was archived:\n\n"
        + "\n".join(lines[:500])
        + ("\n(and more: see the Health page)" if len(lines) > 500 else "")
        + f"\n\nHealth page: {settings.ARCHIVE_SITE_URL}/health/\n"
    )
    outcome, message = AuditEvent.Outcome.OK, f"{len(failures)} failures e-mailed to {len(recipients)} admins"
    if not recipients:
        outcome, message = AuditEvent.Outcome.FAILED, f"{len(failures)} failures; no archive admin has an e-mail"
    else:
        try:
            EmailMessage(
                subject=f"Kaltura Archive: fixity {kind} failed for {len(failures)} copies", body=body, to=recipients
            ).send()
        except OSError as exc:
            outcome, message = AuditEvent.Outcome.FAILED, f"could not e-mail the fixity alarm: {exc}"
            log.error("%s", message)
    audit.record(
        ALARM_ACTION,
        username=username,
        dry_run=False,
        outcome=outcome,
        message=message,
        details={"kind": kind, "copies": [result.copy.id for result in failures[:1000]], "recipients": len(recipients)},
    )
    return len(recipients)


# --- the sample re-hash ----------------------------------------------------------------------------------


def rehash_period(storage_class: str) -> timedelta:
    years = (
        settings.FIXITY_REHASH_YEARS_ARCHIVED
        if storage_class in ARCHIVE_CLASSES
        else settings.FIXITY_REHASH_YEARS_INSTANT
    )
    return timedelta(days=365 * years)


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass
class SamplePlan:
    """What one re-hash run reads: copies whose restore is pending, and the next ones in the rotation."""

    pending: list[ArchiveCopy]
    chosen: list[ArchiveCopy]
    budget_bytes: int
    used_bytes: int  # requested earlier this month
    due_copies: int  # due now, chosen or not
    due_bytes: int
    cost: float

    @property
    def chosen_bytes(self) -> int:
        return sum(copy.size_bytes for copy in self.chosen)

    @property
    def budget_short(self) -> bool:
        """The budget does not cover what is due: some copies go longer than their period without a re-hash."""
        return self.due_bytes > self.budget_bytes - self.used_bytes


def plan_rehash(*, now: datetime | None = None) -> SamplePlan:
    """Before: copies with a recorded SHA-256. After (pure, no S3): the copies whose restore is under way, and the
    copies due (last full read — re-hash or archive-time stream — older than their class's period), oldest first,
    as many as fit in what is left of this month's byte budget."""
    now = now or datetime.now(UTC)
    month = _month_start(now)
    with_hash = ArchiveCopy.objects.exclude(sha256="")
    pending = list(
        with_hash.filter(rehash_requested_at__isnull=False)
        .filter(Q(rehashed_at__isnull=True) | Q(rehashed_at__lt=F("rehash_requested_at")))
        .order_by("id")
    )
    used = ArchiveCopy.objects.filter(rehash_requested_at__gte=month).aggregate(n=Sum("size_bytes"))["n"] or 0
    budget = settings.FIXITY_REHASH_BYTES_PER_MONTH
    pending_ids = {copy.id for copy in pending}
    due = []
    for copy in with_hash.order_by("id").iterator(chunk_size=2000):
        last_read = max(filter(None, [copy.rehashed_at, copy.verified_at]))
        if copy.id not in pending_ids and last_read + rehash_period(copy.storage_class) <= now:
            due.append((last_read, copy.id, copy))
    due.sort(key=lambda item: item[:2])
    chosen, room = [], budget - used
    for _, _, copy in due:
        if copy.size_bytes <= room:
            chosen.append(copy)
            room -= copy.size_bytes
    tier = settings.FIXITY_REHASH_TIER
    cost = sum(
        costs.retrieval_cost(size_bytes=copy.size_bytes, storage_class=copy.storage_class, tier=tier) for copy in chosen
    )
    return SamplePlan(
        pending=pending,
        chosen=chosen,
        budget_bytes=budget,
        used_bytes=used,
        due_copies=len(due),
        due_bytes=sum(copy.size_bytes for _, _, copy in due),
        cost=cost,
    )


@dataclass
class RehashSummary:
    requested: int = 0  # Glacier restores asked for
    waiting: int = 0  # restores not ready yet
    passed: int = 0
    failed: int = 0
    failures: list[CheckResult] = field(default_factory=list)


def rehash_sample(
    *,
    execute: bool = False,
    store: ArchiveStore | None = None,
    now: datetime | None = None,
    username: str = audit.SYSTEM_USERNAME,
) -> tuple[SamplePlan, RehashSummary]:
    """Run the plan: hash copies whose restore is ready, request restores of the chosen Glacier copies, hash the
    chosen instant ones. A dry run only plans (restores cost money), with one audit event saying what it would do."""
    store = store or ArchiveStore.from_settings()
    now = now or datetime.now(UTC)
    plan = plan_rehash(now=now)
    summary = RehashSummary()
    if not execute:
        audit.record(
            REHASH_ACTION,
            username=username,
            dry_run=True,
            message=(
                f"would re-hash {len(plan.chosen)} copies ({plan.chosen_bytes} bytes, ${plan.cost:.2f}), "
                f"{len(plan.pending)} pending"
            ),
            details={"copies": [copy.id for copy in plan.chosen[:1000]]},
        )
        return plan, summary
    if plan.chosen:
        ArchiveCopy.objects.filter(id__in=[copy.id for copy in plan.chosen]).update(rehash_requested_at=now)
    for copy in plan.pending + plan.chosen:
        copy.rehash_requested_at = copy.rehash_requested_at if copy in plan.pending else now
        _rehash_one(store, copy, summary, now=now, username=username)
    if summary.failures:
        alarm(summary.failures, kind="re-hash", username=username)
    return plan, summary


def _rehash_one(
    store: ArchiveStore, copy: ArchiveCopy, summary: RehashSummary, *, now: datetime, username: str
) -> None:
    version = copy.version_id or None
    try:
        if copy.storage_class in ARCHIVE_CLASSES:
            state = store.head(copy.entry_id, key=copy.key, version_id=version)
            if state is None:
                raise StorageError(f"s3://{copy.bucket}/{copy.key} version {version} does not exist", "NoSuchKey")
            if state.needs_restore:
                answer = (
                    "already-in-progress"
                    if state.restore_ongoing
                    else store.request_restore(
                        copy.entry_id, tier=settings.FIXITY_REHASH_TIER, days=1, key=copy.key, version_id=version
                    )
                )
                if answer == "requested":
                    summary.requested += 1
                    audit.record(
                        REHASH_ACTION,
                        username=username,
                        entry_id=copy.entry_id,
                        dry_run=False,
                        message=f"restore requested ({settings.FIXITY_REHASH_TIER}) to re-hash copy {copy.id}",
                        details={"copy": copy.id, "key": copy.key, "version_id": copy.version_id},
                    )
                    state = store.head(copy.entry_id, key=copy.key, version_id=version)
                if state is None or not state.readable:
                    summary.waiting += 1
                    return
        problems = _hash_problems(store, copy)
    except StorageError as exc:
        problems = [f"could not be re-hashed: {exc}"]
    result = CheckResult(copy, problems)
    if result.ok:
        summary.passed += 1
    else:
        summary.failed += 1
        summary.failures.append(result)
    ArchiveCopy.objects.filter(id=copy.id).update(
        rehashed_at=now, rehash_ok=result.ok, rehash_problem="; ".join(problems)
    )
    audit.record(
        REHASH_ACTION,
        username=username,
        entry_id=copy.entry_id,
        dry_run=False,
        outcome=AuditEvent.Outcome.OK if result.ok else AuditEvent.Outcome.FAILED,
        message="re-hash matches the SHA-256 recorded at archive time" if result.ok else "; ".join(problems),
        details={
            "copy": copy.id,
            "key": copy.key,
            "version_id": copy.version_id,
            "sha256": copy.sha256,
            "problems": problems,
        },
    )


def _hash_problems(store: ArchiveStore, copy: ArchiveCopy) -> list[str]:
    """Read the whole version (streamed) and compare its SHA-256 and byte count with the record."""
    body, _ = store.open_stream(copy.entry_id, key=copy.key, version_id=copy.version_id or None)
    reader = HashingReader(body)
    try:
        while reader.read(READ_SIZE):
            pass
    finally:
        reader.close()
    problems = []
    if reader.bytes_read != copy.size_bytes:
        problems.append(f"read {reader.bytes_read} bytes, recorded {copy.size_bytes}")
    if reader.sha256 != copy.sha256.lower():
        problems.append(f"SHA-256 is {reader.sha256}, recorded {copy.sha256}")
    return problems
