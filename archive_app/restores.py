"""Restores: bring an archived original back into Kaltura in place of the placeholder.

One `Restore` row per request, moved along by jobs that re-read live Kaltura and S3 state before every step:

    requested ─(object in GLACIER or DEEP_ARCHIVE, not readable)→ S3 restore requested with the tier → waiting
    ─(the scheduled poller reads the Restore header)→ readable → uploading: the original streams from S3 to a
    Kaltura upload token in chunks, SHA-256 on the way; the final chunk goes only once the hash equals the one
    recorded at archive time → converting: media.updateContent, wait for the replacement and a READY original
    → the tag flavors_deleted is removed (archived_to_s3 stays: the S3 copy stays) → done.

Objects in STANDARD, STANDARD_IA or GLACIER_IR go straight to the upload. A hash mismatch fails the restore
loudly before anything in Kaltura changes. `plan_restore` is pure: the preview shows it, the job performs it.
A rerun after a crash at any line continues: the upload token and "replacement requested" are in `progress`,
and a half-sent upload resumes where Kaltura's token says it stopped.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from archive_app import audit, sync
from archive_app.kaltura import Kaltura, KalturaError
from archive_app.models import (
    TAG_REPLACED,
    ArchiveCopy,
    ArchiveState,
    AuditEvent,
    BatchItem,
    Entry,
    FlavorStatus,
    Restore,
    split_tags,
)
from archive_app.storage import ARCHIVE_CLASSES, ArchiveStore, HashingReader, StorageError
from archive_app.workflow import LiveState, Step, read_live_state, sizes_agree

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 1024 * 1024
# Expected waits, DOMAIN.md §4 (AWS: restoring-objects-retrieval-options): (words, upper bound).
EXPECTED_WAIT = {
    ("GLACIER", "Expedited"): ("1–5 minutes (objects under 250 MB)", timedelta(minutes=5)),
    ("GLACIER", "Standard"): ("3–5 hours", timedelta(hours=5)),
    ("GLACIER", "Bulk"): ("5–12 hours", timedelta(hours=12)),
    ("DEEP_ARCHIVE", "Standard"): ("up to 12 hours", timedelta(hours=12)),
    ("DEEP_ARCHIVE", "Bulk"): ("up to 48 hours", timedelta(hours=48)),
}
# A job that has not shown a sign of life for this long is taken to have died; the poller queues it again.
STALE_AFTER = timedelta(minutes=30)
# Kaltura's analytics job sets lastPlayedAt about daily and late: the scan for plays looks back further.
PLAYS_LOOKBACK = timedelta(days=3)
UPLOAD_PENDING, UPLOAD_PARTIAL, UPLOAD_FULL = 0, 1, 2
NOT_A_PLACEHOLDER = f"not a placeholder (no tag {TAG_REPLACED}): nothing to restore"


class RestoreError(Exception):
    """A restore that cannot be requested (nothing to restore, wrong tier, ...)."""


class WaitOnGlacier(Exception):
    """S3 is still restoring the object: the poller comes back later."""


class Wait(Exception):
    """Kaltura is still converting: check back soon."""


class Refused(Exception):
    """The live state does not allow the restore."""


class HashMismatch(Refused):
    """The bytes in S3 are not the ones archived: nothing may be restored from them."""


class Superseded(Exception):
    """Another job holds the restore now (the poller re-queued it): stop quietly."""


# --- the plan (pure) ----------------------------------------------------------------------


def tiers_for(storage_class: str) -> list[tuple[str, str]]:
    """(tier, expected wait) a restore from this class may use; empty when the class needs no restore."""
    return [
        (tier, EXPECTED_WAIT[(storage_class, tier)][0])
        for tier in Restore.Tier.values
        if (storage_class, tier) in EXPECTED_WAIT
    ]


def expected_wait(storage_class: str, tier: str) -> str:
    if storage_class not in ARCHIVE_CLASSES:
        return "none: the object is readable at once"
    return EXPECTED_WAIT.get((storage_class, tier), ("", None))[0]


def tier_for_class(storage_class: str, tier: str) -> str:
    """The configured tier, or Standard where the class has no such tier (Deep Archive: no Expedited)."""
    return tier if storage_class not in ARCHIVE_CLASSES or (storage_class, tier) in EXPECTED_WAIT else "Standard"


@dataclass(frozen=True)
class RestorePlan:
    entry_id: str
    steps: tuple[Step, ...] = ()
    skip_reason: str = ""
    already_restored: bool = False
    storage_class: str = ""
    size: int = 0
    recorded_sha256: str = ""
    wait: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def skipped(self) -> bool:
        return bool(self.skip_reason)

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def summary(self) -> str:
        if self.skipped:
            return f"skip: {self.skip_reason}"
        if self.already_restored:
            return "already restored"
        return ", ".join(self.step_names)


def _size_text(size: int) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:.2f} GiB"
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size:,} bytes"


def recorded_sha256(state: LiveState) -> str:
    """The SHA-256 taken while archiving: our record, else the S3 object's tag."""
    if state.copy is not None and state.copy.sha256:
        return state.copy.sha256
    return getattr(state.s3, "sha256", None) or ""


def plan_restore(state: LiveState, *, tier: str) -> RestorePlan:
    """What restoring this entry takes now.

    Before: the entry is a placeholder (tag flavors_deleted) and its original is in S3. After the steps: Kaltura's
    original flavor holds the archived bytes (same SHA-256), the flavors are made again from it, the entry is
    READY and tagged archived_to_s3 only. `state.replacement_started`: our own updateContent is under way.
    """
    entry_id = state.entry_id
    if state.entry is None:
        return RestorePlan(entry_id, skip_reason="not found in Kaltura")
    s3 = state.s3
    if s3 is None:
        return RestorePlan(entry_id, skip_reason="no archive copy in S3")
    facts = {"storage_class": s3.storage_class, "size": s3.size, "recorded_sha256": recorded_sha256(state)}
    if state.copy is not None and state.copy.size != s3.size:
        return RestorePlan(
            entry_id,
            skip_reason=f"the S3 object has {s3.size} bytes, the recorded copy {state.copy.size}",
            **facts,
        )
    original = state.original
    content_back = (
        not state.entry.replacing_entry_id
        and original is not None
        and original.status == FlavorStatus.READY
        and sizes_agree(s3.size, original)
    )
    # Our updateContent was sent, and Kaltura shows it (pending, or done). If Kaltura shows neither, it never
    # took (refused, or its conversion failed): start again from the upload.
    started = state.replacement_started and (bool(state.entry.replacing_entry_id) or content_back)
    placeholder = TAG_REPLACED in state.tags
    if not placeholder:
        if started and content_back:
            return RestorePlan(entry_id, already_restored=True, **facts)
        return RestorePlan(entry_id, skip_reason=NOT_A_PLACEHOLDER, **facts)
    if state.entry.replacing_entry_id and not started:
        return RestorePlan(entry_id, skip_reason="a replacement is already pending in Kaltura", **facts)
    warnings = []
    if not facts["recorded_sha256"]:
        warnings.append("no SHA-256 was recorded (archived by the old tool): only the byte count can be checked")
    steps: list[Step] = []
    wait = ""
    if content_back:
        # The original is back (a rerun after the conversion, or restored by other means): only the tag is left.
        steps.append(Step("untag_replaced", f"remove tag {TAG_REPLACED}"))
        return RestorePlan(entry_id, tuple(steps), warnings=tuple(warnings), **facts)
    if not started:
        if s3.storage_class in ARCHIVE_CLASSES and not s3.readable:
            if (s3.storage_class, tier) not in EXPECTED_WAIT:
                return RestorePlan(
                    entry_id,
                    skip_reason=f"{s3.storage_class} has no {tier} restore; choose "
                    + " or ".join(t for t, _ in tiers_for(s3.storage_class)),
                    **facts,
                )
            wait = expected_wait(s3.storage_class, tier)
            if not s3.restore_ongoing:
                steps.append(Step("s3_restore", f"ask S3 to restore the {s3.storage_class} object ({tier}: {wait})"))
            else:
                wait = "a restore is already under way in S3"
        if s3.storage_class in ARCHIVE_CLASSES:
            # Also once readable: the step records until when S3 keeps the restored copy.
            steps.append(Step("s3_wait", "wait until S3 has a readable copy (checked by the scheduled job)"))
        check = "compare its SHA-256 with the recorded one" if facts["recorded_sha256"] else "count its bytes"
        steps.append(
            Step("upload_original", f"stream the original ({_size_text(s3.size)}) from S3 to Kaltura; {check}")
        )
        steps.append(Step("restore_content", "media.updateContent: the placeholder plays until the swap"))
    steps.append(Step("wait_conversion", "wait until Kaltura has made the flavors from the original"))
    steps.append(Step("untag_replaced", f"remove tag {TAG_REPLACED}"))
    return RestorePlan(entry_id, tuple(steps), wait=wait, warnings=tuple(warnings), **facts)


def restore_preview(entry_id: str, *, tier: str, user=None, kaltura=None, store=None, via: str = "") -> RestorePlan:
    """The plan on live state, audited as a dry run."""
    kaltura = kaltura or Kaltura.from_settings()
    store = store or ArchiveStore.from_settings()
    plan = plan_restore(read_live_state(entry_id, kaltura, store), tier=tier)
    audit.record(
        "preview_restore",
        user=user,
        entry_id=entry_id,
        dry_run=True,
        outcome=AuditEvent.Outcome.SKIPPED if plan.skipped else AuditEvent.Outcome.OK,
        message=plan.summary(),
        details={"tier": tier, "steps": plan.step_names, "skip_reason": plan.skip_reason, "via": via},
    )
    return plan


# --- requesting -----------------------------------------------------------------------------


def active_restore(entry_id: str) -> Restore | None:
    return Restore.objects.filter(entry_id=entry_id, status__in=Restore.ACTIVE).first()


def restore_request(
    *, entry_id: str, tier: str, source: str, user=None, kaltura=None, store=None
) -> tuple[Restore, bool]:
    """Request a restore (and queue its job); (restore, created). One already under way is returned instead.

    The plan is read from live state first: an entry with nothing to restore is refused with RestoreError.
    """
    if tier not in Restore.Tier.values:
        raise RestoreError(f"unknown tier {tier!r}; use {', '.join(Restore.Tier.values)}")
    existing = active_restore(entry_id)
    if existing is None:
        plan = restore_preview(entry_id, tier=tier, user=user, kaltura=kaltura, store=store, via=source)
        if plan.skipped or plan.already_restored:
            reason = plan.skip_reason or "already restored"
            audit.record("restore_request", user=user, entry_id=entry_id, dry_run=False,
                         outcome=AuditEvent.Outcome.REFUSED, message=reason)  # fmt: skip
            raise RestoreError(f"{entry_id}: {reason}")
        try:
            with transaction.atomic():
                restore = Restore.objects.create(
                    entry_id=entry_id,
                    source=source,
                    requested_by=user,
                    tier=tier,
                    storage_class=plan.storage_class,
                    size_bytes=plan.size,
                    job_id=uuid.uuid4().hex,
                )
                audit.record(
                    "restore_request",
                    user=user,
                    entry_id=entry_id,
                    dry_run=False,
                    message=plan.summary(),
                    details={"restore": restore.pk, "tier": tier, "source": source, "class": plan.storage_class},
                )
                _enqueue_on_commit(restore)
            return restore, True
        except IntegrityError:
            existing = active_restore(entry_id)  # requested at the same moment by someone else
            if existing is None:
                raise
    audit.record(
        "restore_request",
        user=user,
        entry_id=entry_id,
        dry_run=False,
        outcome=AuditEvent.Outcome.SKIPPED,
        message=f"a restore is already under way ({existing.get_status_display()})",
        details={"restore": existing.pk, "source": source},
    )
    return existing, False


def restore_retry(restore: Restore, *, user) -> Restore:
    """Start a failed (or cancelled) restore again from live state; the same row, a new job."""
    with transaction.atomic():
        try:
            taken = Restore.objects.filter(
                pk=restore.pk, status__in=[Restore.Status.FAILED, Restore.Status.CANCELLED]
            ).update(status=Restore.Status.REQUESTED, error="", finished_at=None, job_id=uuid.uuid4().hex,
                     heartbeat_at=None)  # fmt: skip
        except IntegrityError:
            raise RestoreError("another restore of this entry is under way") from None
        if taken != 1:
            raise RestoreError(f"restore {restore.pk} is {restore.get_status_display()}: only a failed one is retried")
        restore.refresh_from_db()
        audit.record("restore_retry", user=user, entry_id=restore.entry_id, dry_run=False,
                     details={"restore": restore.pk})  # fmt: skip
        _enqueue_on_commit(restore)
    return restore


def restore_cancel(restore: Restore, *, user) -> None:
    """Cancel a restore that has not touched Kaltura yet (requested, or waiting on Glacier)."""
    cancelled = Restore.objects.filter(
        pk=restore.pk, status__in=[Restore.Status.REQUESTED, Restore.Status.WAITING]
    ).update(status=Restore.Status.CANCELLED, job_id="", finished_at=timezone.now(), error="cancelled")
    if cancelled != 1:
        raise RestoreError(
            f"restore {restore.pk} is {restore.get_status_display()}: only one not yet uploading can be cancelled"
        )
    audit.record("restore_cancel", user=user, entry_id=restore.entry_id, dry_run=False,
                 details={"restore": restore.pk})  # fmt: skip


def _enqueue_on_commit(restore: Restore, delay: timedelta | None = None) -> None:
    from archive_app.jobs import enqueue_restore

    restore_id, token, size = restore.pk, restore.job_id, restore.size_bytes
    transaction.on_commit(lambda: enqueue_restore(restore_id, token, size, delay=delay))


# --- the scheduled jobs ---------------------------------------------------------------------


def restore_poll() -> dict:
    """Queue again the restores waiting on Glacier, and those whose job died, each with a new claim token."""
    now = timezone.now()
    stale = Q(status__in=[Restore.Status.REQUESTED, Restore.Status.UPLOADING, Restore.Status.CONVERTING]) & (
        Q(heartbeat_at__lt=now - STALE_AFTER) | Q(heartbeat_at__isnull=True, requested_at__lt=now - STALE_AFTER)
    )
    queued = 0
    for restore in Restore.objects.filter(Q(status=Restore.Status.WAITING) | stale):
        token = uuid.uuid4().hex
        # The old token stops a job that was only slow at its next heartbeat.
        if Restore.objects.filter(pk=restore.pk, job_id=restore.job_id).update(job_id=token) == 1:
            restore.job_id = token
            with transaction.atomic():
                _enqueue_on_commit(restore)
            queued += 1
    return {"queued": queued}


def _played_since() -> datetime | None:
    last = AuditEvent.objects.filter(action="auto_restore_scan", outcome=AuditEvent.Outcome.OK).first()
    return last.created_at - PLAYS_LOOKBACK if last else None


def auto_restore(*, kaltura: Kaltura | None = None, store: ArchiveStore | None = None) -> dict:
    """Request restores for placeholders played after their replacement, and for those replaced although
    created within ARCHIVE_MIN_AGE_DAYS; as the system user, with ARCHIVE_RESTORE_TIER.

    Candidates come from live Kaltura (the mirror may be a sync behind): tag flavors_deleted and played since
    the previous scan (with a look-back for Kaltura's late analytics), or created recently. An entry is not
    asked again once a restore was requested after the play (or replacement) that triggers it, whatever came
    of that restore: a failed one waits for an admin's retry instead of failing every few minutes.
    """
    from archive_app.sync import WindowCursor, walk_entries

    if not settings.ARCHIVE_AUTO_RESTORE:
        return {"disabled": True}
    kaltura = kaltura or Kaltura.from_settings()
    store = store or ArchiveStore.from_settings()
    now = timezone.now()
    since = _played_since()
    protected_from = now - timedelta(days=settings.ARCHIVE_MIN_AGE_DAYS)
    candidates: dict[str, tuple[str, object]] = {}
    played_filter = {"lastPlayedAtGreaterThanOrEqual": int(since.timestamp()) if since else 1}
    for page in walk_entries(kaltura, WindowCursor("createdAt"), tagsLike=TAG_REPLACED, **played_filter):
        for entry in page:
            if _is_placeholder(entry) and entry.last_played_at:
                candidates[entry.id] = (Restore.Source.AUTO_PLAYED, entry)
    cursor = WindowCursor("createdAt", start=int(protected_from.timestamp()))
    for page in walk_entries(kaltura, cursor, tagsLike=TAG_REPLACED):
        for entry in page:
            if _is_placeholder(entry):
                candidates.setdefault(entry.id, (Restore.Source.AUTO_PROTECTED, entry))

    replaced_at = dict(
        ArchiveCopy.objects.filter(entry_id__in=list(candidates), replaced_at__isnull=False).values_list(
            "entry_id", "replaced_at"
        )
    )
    unknown = [entry_id for entry_id in candidates if entry_id not in replaced_at]
    if unknown:
        # Replaced by the old tool: Kaltura's original flavor changed when the placeholder went in.
        for entry_id, flavors in kaltura.flavors_for_entries(unknown).items():
            original = next((f for f in flavors if f.is_original), None)
            if original is not None and original.updated_at:
                replaced_at[entry_id] = original.updated_at
    counts = {"played": 0, "protected": 0, "requested": 0, "already_answered": 0, "refused": 0}
    for entry_id, (source, entry) in candidates.items():
        replaced = replaced_at.get(entry_id)
        if source == Restore.Source.AUTO_PLAYED:
            if replaced is not None and entry.last_played_at <= replaced:
                continue  # played before it was replaced
            trigger = entry.last_played_at
            counts["played"] += 1
        else:
            trigger = replaced or entry.created_at
            counts["protected"] += 1
        answered = (
            Restore.objects.filter(
                Q(requested_at__gte=trigger) | Q(status__in=Restore.ACTIVE), entry_id=entry_id
            ).exists()
            or AuditEvent.objects.filter(
                action="restore_request", entry_id=entry_id, outcome=AuditEvent.Outcome.REFUSED, created_at__gte=trigger
            ).exists()
        )
        if answered:
            counts["already_answered"] += 1
            continue
        s3 = store.head(entry_id)
        tier = tier_for_class(s3.storage_class if s3 else "", settings.ARCHIVE_RESTORE_TIER)
        try:
            restore_request(entry_id=entry_id, tier=tier, source=source, user=None, kaltura=kaltura, store=store)
            counts["requested"] += 1
        except RestoreError as exc:
            counts["refused"] += 1
            log.warning("automatic restore refused: %s", exc)
    audit.record("auto_restore_scan", dry_run=False, details={"since": since.isoformat() if since else None,
                                                               **counts})  # fmt: skip
    return counts


def _is_placeholder(entry) -> bool:
    # The tag filter matches words and prefixes; decide on the exact tag here.
    return TAG_REPLACED in {tag.lower() for tag in split_tags(entry.tags)}


# --- executing ----------------------------------------------------------------------------


def claim_restore(restore_id: int, token: str) -> Restore | None:
    """Take the restore for this job (or its retry, same token); None when another job holds it."""
    taken = Restore.objects.filter(id=restore_id, job_id=token, status__in=Restore.ACTIVE).update(
        heartbeat_at=timezone.now(), attempts=F("attempts") + 1
    )
    if taken != 1:
        return None
    return Restore.objects.select_related("requested_by").get(id=restore_id)


@dataclass
class Context:
    restore: Restore
    kaltura: Kaltura
    store: ArchiveStore
    state: LiveState
    plan: RestorePlan

    @property
    def entry_id(self) -> str:
        return self.restore.entry_id

    def save(self, **fields) -> None:
        """Write fields (and a heartbeat) only while this job still holds the restore."""
        fields["heartbeat_at"] = timezone.now()
        if "progress" in fields:
            fields["progress"] = {**self.restore.progress, **fields["progress"]}
        held = Restore.objects.filter(pk=self.restore.pk, job_id=self.restore.job_id, status__in=Restore.ACTIVE)
        if held.update(**fields) != 1:
            raise Superseded(f"restore {self.restore.pk} is now held by another job")
        for name, value in fields.items():
            setattr(self.restore, name, value)


def execute_restore(restore_id: int, token: str, *, kaltura: Kaltura | None = None, store: ArchiveStore | None = None):
    """Move one restore as far as it can go now. Returns the restore, or None if it was not this job's."""
    restore = claim_restore(restore_id, token)
    if restore is None:
        return None
    user = restore.requested_by
    try:
        if BatchItem.objects.filter(entry_id=restore.entry_id, status__in=BatchItem.ACTIVE).exists():
            raise Wait("a batch is working on this entry")
        kaltura = kaltura or Kaltura.from_settings()
        store = store or ArchiveStore.from_settings()
        started = bool(restore.progress.get("replace_requested"))
        state = read_live_state(restore.entry_id, kaltura, store, replacement_started=started)
        plan = plan_restore(state, tier=restore.tier)
        context = Context(restore=restore, kaltura=kaltura, store=store, state=state, plan=plan)
        if plan.already_restored:
            _finish(context, Restore.Status.DONE, "")
            return restore
        if plan.skipped:
            raise Refused(plan.skip_reason)
        context.save(storage_class=plan.storage_class, size_bytes=plan.size)
        for step in plan.steps:
            details = STEPS[step.name](context) or {}
            audit.record(step.name, user=user, entry_id=restore.entry_id, dry_run=False,
                         details={"restore": restore.pk, **details})  # fmt: skip
            context.save(progress={f"done_{step.name}": True})
        _finish(context, Restore.Status.DONE, "")
        return restore
    except Superseded as exc:
        log.info("%s", exc)
        return None
    except WaitOnGlacier:
        return restore  # the poller queues it again
    except Wait as waiting:
        restore.error = str(waiting)
        Restore.objects.filter(pk=restore.pk, job_id=token).update(error=str(waiting), heartbeat_at=timezone.now())
        from archive_app.jobs import enqueue_restore

        enqueue_restore(restore.pk, token, restore.size_bytes, delay=timedelta(seconds=30))
        return restore
    except HashMismatch as exc:
        log.error("RESTORE REFUSED for %s: %s", restore.entry_id, exc)
        _fail(restore, token, f"SHA-256 MISMATCH, nothing was changed: {exc}", user, AuditEvent.Outcome.REFUSED)
        return restore
    except Refused as exc:
        _fail(restore, token, str(exc), user, AuditEvent.Outcome.REFUSED)
        return restore
    except (KalturaError, StorageError, requests.RequestException, OSError) as exc:
        message = f"{type(exc).__name__}: {exc}"
        if getattr(exc, "transient", False):
            # RQ's retry takes it again with the same token; once retries are spent the poller does.
            Restore.objects.filter(pk=restore.pk, job_id=token).update(error=message[:4000])
            audit.record("restore_step_failed", user=user, entry_id=restore.entry_id, dry_run=False,
                         outcome=AuditEvent.Outcome.FAILED, message=f"{message} (will retry)",
                         details={"restore": restore.pk})  # fmt: skip
            raise
        _fail(restore, token, message, user, AuditEvent.Outcome.FAILED)
        return restore


def _finish(context: Context, status: str, error: str) -> None:
    context.save(status=status, error=error, finished_at=timezone.now())
    sync.refresh_entries([context.entry_id], context.kaltura)  # the pages show the restored entry at once
    if status == Restore.Status.DONE:
        audit.record("restore_done", user=context.restore.requested_by, entry_id=context.entry_id, dry_run=False,
                     details={"restore": context.restore.pk})  # fmt: skip


def _fail(restore: Restore, token: str, message: str, user, outcome: str) -> None:
    Restore.objects.filter(pk=restore.pk, job_id=token).update(
        status=Restore.Status.FAILED, error=message[:4000], finished_at=timezone.now()
    )
    audit.record("restore_failed", user=user, entry_id=restore.entry_id, dry_run=False, outcome=outcome,
                 message=message, details={"restore": restore.pk})  # fmt: skip


# --- the steps ------------------------------------------------------------------------------


def step_s3_restore(context: Context) -> dict:
    restore = context.restore
    days = settings.ARCHIVE_RESTORE_DAYS
    answer = context.store.request_restore(context.entry_id, tier=restore.tier, days=days)
    now = timezone.now()
    bound = EXPECTED_WAIT.get((context.plan.storage_class, restore.tier), ("", timedelta(hours=12)))[1]
    context.save(status=Restore.Status.WAITING, s3_requested_at=now, expected_ready_at=now + bound,
                 progress={"s3_restore": answer})  # fmt: skip
    return {"answer": answer, "tier": restore.tier, "days": days, "class": context.plan.storage_class}


def step_s3_wait(context: Context) -> dict:
    s3 = context.store.head(context.entry_id)
    if s3 is None:
        raise Refused("the S3 object disappeared while restoring")
    if not s3.readable:
        waiting = {"status": Restore.Status.WAITING}
        if context.restore.expected_ready_at is None:
            # A restore someone else asked for: its tier is unknown, so assume ours.
            bound = EXPECTED_WAIT.get((s3.storage_class, context.restore.tier), ("", timedelta(hours=12)))[1]
            waiting["expected_ready_at"] = timezone.now() + bound
        context.save(**waiting)
        raise WaitOnGlacier(f"{context.entry_id}: S3 is still restoring the object")
    return {"restored_until": s3.restored_until.isoformat() if s3.restored_until else None}


def _read_exactly(reader: HashingReader, size: int) -> bytes:
    parts, wanted = [], size
    while wanted > 0:
        data = reader.read(min(wanted, 1024 * 1024))
        if not data:
            break
        parts.append(data)
        wanted -= len(data)
    return b"".join(parts)


def step_upload_original(context: Context) -> dict:
    """Stream S3 → Kaltura in chunks; the final chunk goes only after the SHA-256 matched.

    A rerun resumes the recorded upload token where Kaltura says it stopped: the bytes it has are read from S3
    again to complete the hash, but not sent again.
    """
    restore, kaltura = context.restore, context.kaltura
    size, expected = context.plan.size, context.plan.recorded_sha256
    file_name = f"{context.entry_id}.mp4"
    token_id = restore.progress.get("upload_token")
    start = 0
    if token_id:
        token = kaltura.upload_token_state(token_id)
        if token is not None and token[0] == UPLOAD_FULL:
            return {"upload_token": token_id, "resumed": "already complete and verified"}
        if token is None or token[0] not in (UPLOAD_PENDING, UPLOAD_PARTIAL):
            token_id = None
        else:
            start = token[1] if token[0] == UPLOAD_PARTIAL else 0
    if not token_id:
        token_id = kaltura.add_upload_token(file_name=file_name, size=size)
    context.save(status=Restore.Status.UPLOADING, bytes_uploaded=start, progress={"upload_token": token_id})
    body, length = context.store.open_stream(context.entry_id)
    if length != size:
        body.close()
        raise Refused(f"S3 now serves {length} bytes, {size} were planned")
    reader = HashingReader(body)
    try:
        if start and len(_read_exactly(reader, start)) != start:
            raise HashMismatch(f"S3 ended before byte {start}")
        offset, chunk = start, _read_exactly(reader, CHUNK_BYTES)
        while True:
            following = _read_exactly(reader, CHUNK_BYTES) if len(chunk) == CHUNK_BYTES else b""
            final = not following
            if final:
                if reader.bytes_read != size:
                    raise HashMismatch(f"read {reader.bytes_read} bytes from S3, the archived copy has {size}")
                if expected and reader.sha256 != expected.lower():
                    raise HashMismatch(f"the S3 object's SHA-256 is {reader.sha256}, {expected} was recorded")
            kaltura.upload_chunk(token_id, chunk, file_name=file_name, offset=offset, final=final)
            offset += len(chunk)
            context.save(bytes_uploaded=offset)
            if final:
                break
            chunk = following
    finally:
        reader.close()
    if not expected:
        # The old tool's copy had no hash: record the one now known, so later checks have it.
        ArchiveCopy.objects.filter(entry_id=context.entry_id, sha256="").update(sha256=reader.sha256)
    return {"upload_token": token_id, "bytes": offset, "sha256": reader.sha256, "resumed_at": start,
            "compared_with": expected or "(none recorded)"}  # fmt: skip


def step_restore_content(context: Context) -> dict:
    token_id = context.restore.progress["upload_token"]
    # Marked before the call: if the answer is lost, a rerun knows the replacement may be ours.
    context.save(status=Restore.Status.CONVERTING, progress={"replace_requested": True})
    try:
        context.kaltura.replace_content(context.entry_id, token_id)
    except KalturaError as exc:
        if exc.code != "ENTRY_REPLACEMENT_ALREADY_EXISTS":
            raise
    return {"replacement": "started", "upload_token": token_id}


def step_wait_conversion(context: Context) -> dict:
    size = context.plan.size
    deadline = time.monotonic() + settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS
    context.save(status=Restore.Status.CONVERTING)
    while True:
        entry = context.kaltura.get_entry(context.entry_id)
        flavors = context.kaltura.flavors(context.entry_id)
        original = next((f for f in flavors if f.is_original), None)
        if not entry.replacing_entry_id and original is not None and original.status == FlavorStatus.READY:
            if not sizes_agree(size, original):
                raise Refused(
                    f"Kaltura finished the replacement but its original has {original.size_bytes} bytes, not {size}"
                )
            return {"original_flavor": original.id, "bytes": original.size_bytes,
                    "flavors": [f.id for f in flavors if not f.is_original]}  # fmt: skip
        if time.monotonic() > deadline:
            raise Wait("Kaltura is still converting the original")
        time.sleep(2)


def step_untag_replaced(context: Context) -> dict:
    # Read the tags again right before writing: someone may have edited them meanwhile.
    current = split_tags(context.kaltura.get_entry(context.entry_id).tags)
    wanted = [tag for tag in current if tag.lower() != TAG_REPLACED]
    entry = context.kaltura.set_tags(context.entry_id, wanted)
    mirror = Entry.objects.filter(id=context.entry_id).first()
    if mirror is not None:
        mirror.set_tags(entry.tags)
        mirror.save(update_fields=["tags", "tags_search", "archive_state"])
    ArchiveCopy.objects.filter(entry_id=context.entry_id).update(replaced_at=None, bytes_freed=0)
    Entry.objects.filter(id=context.entry_id, archive_state=ArchiveState.PLACEHOLDER).update(
        archive_state=ArchiveState.ARCHIVED
    )
    return {"tags_before": ", ".join(current), "tags_after": entry.tags}


STEPS = {
    "s3_restore": step_s3_restore,
    "s3_wait": step_s3_wait,
    "upload_original": step_upload_original,
    "restore_content": step_restore_content,
    "wait_conversion": step_wait_conversion,
    "untag_replaced": step_untag_replaced,
}


# --- reading ---------------------------------------------------------------------------------


def restore_counts() -> dict[str, int]:
    """Restores by status, for the dashboard."""
    from django.db.models import Count

    counts = dict(Restore.objects.values_list("status").annotate(n=Count("id")))
    return {status: counts.get(status, 0) for status in Restore.Status.values}
