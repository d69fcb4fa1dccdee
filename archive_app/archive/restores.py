"""Restores: bring an archived original back into Kaltura in place of the placeholder.

One `Restore` row per request, moved along by jobs that re-read live Kaltura and S3 state before every step:

    requested ─(object in GLACIER or DEEP_ARCHIVE, not readable)→ S3 restore requested with the tier → waiting
    ─(the scheduled poller reads the Restore header)→ readable → uploading: the original streams from S3 to a
    Kaltura upload token in chunks, SHA-256 on the way; the final chunk goes only once the hash equals the one
    recorded at archive time → converting: media.updateContent, wait for the replacement and a READY original
    → the tag flavors_deleted is removed (archived_to_s3 stays: the S3 copy stays) → done.

Objects in STANDARD, STANDARD_IA or GLACIER_IR go straight to the upload. A hash mismatch fails the restore
loudly before anything in Kaltura changes. A restore writes only over the placeholder recorded when it went in
(flavor id, version, bytes): anything else Kaltura holds stops it with a reason and leaves Kaltura untouched.
Restores run through the runner (archive_app/archive/runner.py), as batch items do: the same claim and entry lock,
fenced writes, waits with a deadline and one function that sends Kaltura new content.
`plan_restore` is pure: the preview shows it, the job performs it.
A rerun after a crash at any line continues: the upload token and "replacement requested" are in `progress`,
and a half-sent upload resumes where Kaltura's token says it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from archive_app import audit
from archive_app.archive import runner
from archive_app.archive.runner import Refused
from archive_app.archive.workflow import ContentId, LiveState, Policy, Step, read_live_state, sizes_agree
from archive_app.lib.kaltura import Kaltura
from archive_app.lib.storage import ARCHIVE_CLASSES, ArchiveStore, HashingReader
from archive_app.models import (
    TAG_REPLACED,
    ArchiveCopy,
    ArchiveState,
    AuditEvent,
    Entry,
    FlavorStatus,
    Restore,
    split_tags,
)

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
PLACEHOLDER_ON_NEW_CONTENT = "placeholder tag on new content: archive it or remove the tag"


class RestoreError(Exception):
    """A restore that cannot be requested (nothing to restore, wrong tier, ...)."""


def _hash_mismatch(reason: str) -> Refused:
    """The bytes in S3 are not the ones archived: nothing may be restored from them."""
    return Refused(f"SHA-256 MISMATCH, nothing was changed: {reason}")


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
    # Kaltura shows a placeholder this archive never recorded and whose size it does not know (the old tool's
    # placeholder, most likely): an archive admin may confirm it on the restore page.
    needs_confirmation: bool = False
    # Recorded versus live identity, for the audit event of a refusal (set by restore_preview).
    identity: dict = field(default_factory=dict, compare=False)

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


def placeholder_refusal(state: LiveState, *, known_sizes: frozenset[int] = frozenset(), confirmed=False) -> str:
    """'' when Kaltura's original is still the placeholder a restore may write over; else why not, in words.

    Rule: a restore writes only over the placeholder recorded when it went in (same flavor id, version and
    bytes). One never recorded (the old tool's) counts if it has the size of a known placeholder file, or
    if an archive admin confirmed it.
    """
    original = state.original
    if original is None:
        return "Kaltura has no original flavor for this entry"
    recorded = state.copy.placeholder if state.copy is not None else None
    live = ContentId.of(original)
    if recorded is not None:
        if recorded.matches(original):
            return ""
        when = f", changed {original.updated_at:%Y-%m-%d %H:%M} UTC" if original.updated_at else ""
        return (
            f"{PLACEHOLDER_ON_NEW_CONTENT}: Kaltura's original is now {live.describe()}{when}; the placeholder put "
            f"in was {recorded.describe()}. Nothing was changed in Kaltura"
        )
    if confirmed or any(sizes_agree(size, original) for size in known_sizes):
        return ""
    return (
        f"Kaltura's original ({live.describe()}) is not a placeholder this archive recorded, and no known "
        "placeholder has its size (PLACEHOLDER_VIDEO, PLACEHOLDER_PREVIOUS_SIZES): an archive admin must confirm "
        "on the restore page that the entry plays a placeholder"
    )


# Once the original is back (archive_app/archive/sidecar.py restore_captions).
CAPTIONS_STEP = Step("restore_captions", "add back from S3 the captions the sidecar lists and Kaltura no longer has")


def plan_restore(
    state: LiveState, *, tier: str, known_placeholder_sizes: frozenset[int] = frozenset(), confirmed: bool = False
) -> RestorePlan:
    """What restoring this entry takes now.

    Before: the entry is a placeholder (tag flavors_deleted), Kaltura's original is still that placeholder (see
    placeholder_refusal), and its archived original is in S3 at the recorded key and version. After the steps:
    Kaltura's original flavor holds the archived bytes (same SHA-256), the flavors are made again from it, the
    entry is READY and tagged archived_to_s3 only. `state.replacement_started`: our own updateContent is under way.
    """
    entry_id = state.entry_id
    if state.legal_hold:
        return RestorePlan(entry_id, skip_reason=state.legal_hold)
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
    if not started and not content_back:
        reason = placeholder_refusal(state, known_sizes=known_placeholder_sizes, confirmed=confirmed)
        if reason:
            unknown = state.copy is None or state.copy.placeholder is None
            return RestorePlan(
                entry_id, skip_reason=reason, needs_confirmation=unknown and bool(state.original), **facts
            )
    warnings = []
    if not facts["recorded_sha256"]:
        warnings.append("no SHA-256 was recorded (archived by the old tool): only the byte count can be checked")
    steps: list[Step] = []
    wait = ""
    if content_back:
        # The original is back (a rerun after the conversion, or restored by other means): only the tag is left.
        steps += [CAPTIONS_STEP, Step("untag_replaced", f"remove tag {TAG_REPLACED}")]
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
    steps.append(CAPTIONS_STEP)
    steps.append(Step("untag_replaced", f"remove tag {TAG_REPLACED}"))
    return RestorePlan(entry_id, tuple(steps), wait=wait, warnings=tuple(warnings), **facts)


def known_placeholder_sizes() -> frozenset[int]:
    return Policy.from_settings(timezone.now()).known_placeholder_sizes


def restore_preview(
    entry_id: str, *, tier: str, user=None, kaltura=None, store=None, via: str = "", confirmed: bool = False
) -> RestorePlan:
    """The plan on live state, audited as a dry run (with recorded versus live identity when it refuses)."""
    kaltura = kaltura or Kaltura.from_settings()
    store = store or ArchiveStore.from_settings()
    state = read_live_state(entry_id, kaltura, store)
    plan = plan_restore(state, tier=tier, known_placeholder_sizes=known_placeholder_sizes(), confirmed=confirmed)
    details = {"tier": tier, "steps": plan.step_names, "skip_reason": plan.skip_reason, "via": via}
    if plan.skipped:
        plan = dataclasses.replace(plan, identity=state.identity())
        details.update(plan.identity)
    audit.record(
        "preview_restore",
        user=user,
        entry_id=entry_id,
        dry_run=True,
        outcome=AuditEvent.Outcome.SKIPPED if plan.skipped else AuditEvent.Outcome.OK,
        message=plan.summary(),
        details=details,
    )
    return plan


# --- requesting -----------------------------------------------------------------------------


def active_restore(entry_id: str) -> Restore | None:
    return Restore.objects.filter(entry_id=entry_id, status__in=Restore.ACTIVE).first()


def restore_request(
    *, entry_id: str, tier: str, source: str, user=None, kaltura=None, store=None, confirm_placeholder=False
) -> tuple[Restore, bool]:
    """Request a restore (and queue its job); (restore, created). One already under way is returned instead.

    The plan is read from live state first: an entry with nothing to restore is refused with RestoreError.
    `confirm_placeholder`: the (archive admin) user confirmed that the entry plays a placeholder this archive
    never recorded (the old tool's).
    """
    if tier not in Restore.Tier.values:
        raise RestoreError(f"unknown tier {tier!r}; use {', '.join(Restore.Tier.values)}")
    confirmed = bool(confirm_placeholder and user is not None)
    existing = active_restore(entry_id)
    if existing is None:
        plan = restore_preview(
            entry_id, tier=tier, user=user, kaltura=kaltura, store=store, via=source, confirmed=confirmed
        )
        if plan.skipped or plan.already_restored:
            reason = plan.skip_reason or "already restored"
            audit.record(
                "restore_request",
                user=user,
                entry_id=entry_id,
                dry_run=False,
                outcome=AuditEvent.Outcome.REFUSED,
                message=reason,
                details=plan.identity,
            )
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
                    placeholder_confirmed_by=user if confirmed else None,
                )
                audit.record(
                    "restore_request",
                    user=user,
                    entry_id=entry_id,
                    dry_run=False,
                    message=plan.summary(),
                    details={
                        "restore": restore.pk,
                        "tier": tier,
                        "source": source,
                        "class": plan.storage_class,
                        "placeholder_confirmed": confirmed,
                    },
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
    """Start a failed (errored, cancelled) restore again from live state; the same row, a new job.

    Only an ended restore is touched (a conditional update on its status), so a retry never resets one a job
    is running. What Kaltura was asked before is forgotten except the upload token (its bytes resume).
    """
    with transaction.atomic():
        restore.refresh_from_db()
        progress = {k: v for k, v in restore.progress.items() if k == "upload_token"}
        try:
            taken = Restore.objects.filter(pk=restore.pk, status__in=Restore.RETRYABLE).update(
                status=Restore.Status.REQUESTED,
                error="",
                finished_at=None,
                job_id=uuid.uuid4().hex,
                heartbeat_at=None,
                progress=progress,
            )
        except IntegrityError:
            raise RestoreError("another restore of this entry is under way") from None
        if taken != 1:
            raise RestoreError(f"restore {restore.pk} is {restore.get_status_display()}: only a failed one is retried")
        restore.refresh_from_db()
        audit.record(
            "restore_retry", user=user, entry_id=restore.entry_id, dry_run=False, details={"restore": restore.pk}
        )
        _enqueue_on_commit(restore)
    return restore


def restore_cancel(restore: Restore, *, user) -> None:
    """Cancel a restore that has not touched Kaltura yet (requested, or waiting on Glacier)."""
    with transaction.atomic():
        cancelled = Restore.objects.filter(
            pk=restore.pk, status__in=[Restore.Status.REQUESTED, Restore.Status.WAITING]
        ).update(status=Restore.Status.CANCELLED, job_id="", finished_at=timezone.now(), error="cancelled")
        runner.release_lock(RESTORES, restore)
    if cancelled != 1:
        raise RestoreError(
            f"restore {restore.pk} is {restore.get_status_display()}: only one not yet uploading can be cancelled"
        )
    audit.record("restore_cancel", user=user, entry_id=restore.entry_id, dry_run=False, details={"restore": restore.pk})


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
    from archive_app.mirror.sync import WindowCursor, walk_entries

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
    audit.record("auto_restore_scan", dry_run=False, details={"since": since.isoformat() if since else None, **counts})
    return counts


def _is_placeholder(entry) -> bool:
    # The tag filter matches words and prefixes; decide on the exact tag here.
    return TAG_REPLACED in {tag.lower() for tag in split_tags(entry.tags)}


# --- executing (through the runner) -----------------------------------------------------------


class RestoreOperation(runner.Operation):
    """A restore: the phase status (requested, waiting, uploading, converting) stays while it waits."""

    model = Restore
    lock_prefix = "restore"
    message_field = "error"
    done_status = Restore.Status.DONE
    skipped_status = Restore.Status.FAILED
    failed_status = Restore.Status.FAILED
    errored_status = Restore.Status.ERRORED
    waiting_status = None

    def claimable(self):
        return Restore.objects.filter(status__in=Restore.ACTIVE)

    def claim_changes(self, now) -> dict:
        return {"heartbeat_at": now, "attempts": F("attempts") + 1}

    def load(self, pk: int) -> Restore:
        return Restore.objects.select_related("requested_by").get(pk=pk)

    def user(self, row):
        return row.requested_by

    def audit_details(self, row) -> dict:
        return {"restore": row.pk}

    def audit_action(self, row, action: str) -> str:
        return "restore_failed"

    def plan(self, run: runner.Run) -> runner.Outcome:
        restore = run.row
        plan = plan_restore(
            run.state,
            tier=restore.tier,
            known_placeholder_sizes=known_placeholder_sizes(),
            confirmed=restore.placeholder_confirmed_by_id is not None,
        )
        run.scratch["plan"] = plan
        if plan.already_restored:
            return runner.Outcome(done=True)
        if plan.skipped:
            raise runner.Refused(plan.skip_reason)
        run.save(storage_class=plan.storage_class, size_bytes=plan.size)
        return runner.Outcome(steps=plan.steps)

    def reschedule(self, row, delay) -> None:
        from archive_app.jobs import enqueue_restore

        enqueue_restore(row.pk, row.job_id, row.size_bytes, delay=delay)

    def ended(self, run, status) -> None:
        if status == Restore.Status.DONE:
            audit.record(
                "restore_done",
                user=run.row.requested_by,
                entry_id=run.entry_id,
                dry_run=False,
                details={"restore": run.row.pk},
            )
        if status == Restore.Status.FAILED and run.row.error.startswith("SHA-256 MISMATCH"):
            log.error("RESTORE REFUSED for %s: %s", run.entry_id, run.row.error)


RESTORES = RestoreOperation()


def execute_restore(restore_id: int, token: str, *, kaltura: Kaltura | None = None, store: ArchiveStore | None = None):
    """Move one restore as far as it can go now. Returns the restore, or None if it was not this job's."""
    return runner.execute(RESTORES, restore_id, token, kaltura=kaltura, store=store)


# --- the steps ------------------------------------------------------------------------------


def _location(run: runner.Run) -> dict:
    """The recorded copy's exact key and version (the entry id's key for the old tool's, never recorded)."""
    copy = run.state.copy
    return {"key": copy.key, "version_id": copy.version_id or None} if copy is not None else {}


def step_s3_restore(run: runner.Run) -> dict:
    restore, plan = run.row, run.scratch["plan"]
    days = settings.ARCHIVE_RESTORE_DAYS
    answer = run.store.request_restore(run.entry_id, tier=restore.tier, days=days, **_location(run))
    now = timezone.now()
    bound = EXPECTED_WAIT.get((plan.storage_class, restore.tier), ("", timedelta(hours=12)))[1]
    run.save(
        status=Restore.Status.WAITING,
        s3_requested_at=now,
        expected_ready_at=now + bound,
        progress={"s3_restore": answer},
    )
    return {"answer": answer, "tier": restore.tier, "days": days, "class": plan.storage_class}


def step_s3_wait(run: runner.Run) -> dict:
    s3 = run.store.head(run.entry_id, **_location(run))
    if s3 is None:
        raise runner.Refused("the S3 object disappeared while restoring")
    if not s3.readable:
        waiting = {"status": Restore.Status.WAITING}
        if run.row.expected_ready_at is None:
            # A restore someone else asked for: its tier is unknown, so assume ours.
            bound = EXPECTED_WAIT.get((s3.storage_class, run.row.tier), ("", timedelta(hours=12)))[1]
            waiting["expected_ready_at"] = timezone.now() + bound
        run.save(**waiting)
        # No delay: the scheduled poller (restore_poll) queues it again while S3 restores.
        raise runner.Wait(f"{run.entry_id}: S3 is still restoring the object", delay=None)
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


def step_upload_original(run: runner.Run) -> dict:
    """Stream S3 → Kaltura in chunks; the final chunk goes only after the SHA-256 matched.

    A rerun resumes the recorded upload token where Kaltura says it stopped: the bytes it has are read from S3
    again to complete the hash, but not sent again.
    """
    restore, kaltura, plan = run.row, run.kaltura, run.scratch["plan"]
    size, expected = plan.size, plan.recorded_sha256
    file_name = f"{run.entry_id}.mp4"
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
    run.save(status=Restore.Status.UPLOADING, bytes_uploaded=start, progress={"upload_token": token_id})
    body, length = run.store.open_stream(run.entry_id, **_location(run))
    if length != size:
        body.close()
        raise Refused(f"S3 now serves {length} bytes, {size} were planned")
    reader = HashingReader(body)
    try:
        if start and len(_read_exactly(reader, start)) != start:
            raise _hash_mismatch(f"S3 ended before byte {start}")
        offset, chunk = start, _read_exactly(reader, CHUNK_BYTES)
        while True:
            following = _read_exactly(reader, CHUNK_BYTES) if len(chunk) == CHUNK_BYTES else b""
            final = not following
            if final:
                if reader.bytes_read != size:
                    raise _hash_mismatch(f"read {reader.bytes_read} bytes from S3, the archived copy has {size}")
                if expected and reader.sha256 != expected.lower():
                    raise _hash_mismatch(f"the S3 object's SHA-256 is {reader.sha256}, {expected} was recorded")
            kaltura.upload_chunk(token_id, chunk, file_name=file_name, offset=offset, final=final)
            offset += len(chunk)
            run.save(bytes_uploaded=offset)
            if final:
                break
            chunk = following
    finally:
        reader.close()
    if not expected:
        # The old tool's copy had no hash: record the one now known, so later checks have it.
        ArchiveCopy.objects.filter(entry_id=run.entry_id, sha256="").update(
            sha256=reader.sha256, sha256_source=ArchiveCopy.HashSource.S3_READ
        )
    return {
        "upload_token": token_id,
        "bytes": offset,
        "sha256": reader.sha256,
        "resumed_at": start,
        "compared_with": expected or "(none recorded)",
    }


def step_restore_content(run: runner.Run) -> dict:
    restore = run.row

    def still_allowed(state: LiveState) -> str:
        if state.legal_hold:
            return state.legal_hold
        # The owner may have uploaded new content over the placeholder since the plan was made.
        if TAG_REPLACED not in state.tags:
            return NOT_A_PLACEHOLDER
        return placeholder_refusal(
            state, known_sizes=known_placeholder_sizes(), confirmed=restore.placeholder_confirmed_by_id is not None
        )

    run.save(status=Restore.Status.CONVERTING)
    return runner.send_replacement(run, restore.progress["upload_token"], still_allowed=still_allowed)


def step_wait_conversion(run: runner.Run) -> dict:
    size = run.scratch["plan"].size
    run.save(status=Restore.Status.CONVERTING)
    original = runner.wait_for_swap(run, expected_size=lambda flavor: sizes_agree(size, flavor), what="restore")
    return {"original": original.as_dict()}


def step_restore_captions(run: runner.Run) -> dict:
    from archive_app.archive.sidecar import restore_captions

    recorded = run.state.copy
    copy = None
    if recorded is not None:
        copy = ArchiveCopy.objects.filter(
            entry_id=run.entry_id, key=recorded.key, version_id=recorded.version_id
        ).first()
    details = restore_captions(
        run.store,
        run.kaltura,
        copy,
        run.progress.get("captions_added", {}),
        lambda added: run.save_progress(captions_added=added),
    )
    if details.get("captions_refused"):
        log.error("captions of %s not restored: %s", run.entry_id, details["captions_refused"])
    return details


def step_untag_replaced(run: runner.Run) -> dict:
    details = runner.write_tags(run, remove=(TAG_REPLACED,))
    ArchiveCopy.objects.filter(entry_id=run.entry_id).update(
        replaced_at=None, bytes_freed=0, placeholder_flavor_id="", placeholder_version="", placeholder_size=None
    )
    Entry.objects.filter(id=run.entry_id, archive_state=ArchiveState.PLACEHOLDER).update(
        archive_state=ArchiveState.ARCHIVED
    )
    return details


RESTORES.steps = {
    "s3_restore": step_s3_restore,
    "s3_wait": step_s3_wait,
    "upload_original": step_upload_original,
    "restore_content": step_restore_content,
    "wait_conversion": step_wait_conversion,
    "restore_captions": step_restore_captions,
    "untag_replaced": step_untag_replaced,
}
STEPS = RESTORES.steps


# --- reading ---------------------------------------------------------------------------------


def restore_counts() -> dict[str, int]:
    """Restores by status, for the dashboard."""
    from django.db.models import Count

    counts = dict(Restore.objects.values_list("status").annotate(n=Count("id")))
    return {status: counts.get(status, 0) for status in Restore.Status.values}
