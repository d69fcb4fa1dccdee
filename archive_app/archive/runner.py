"""The one runner for operations on an entry: batch items (archive, replace) and restores.

Each rule of running lives here once:
- **Claim**: a conditional update of the row with the job's token, and the entry's `EntryLock` (unique entry
  id) taken in the same transaction: at most one operation per entry, across batches and restores, enforced by
  the database. The lock is held from the claim until the operation ends, waits included.
- **Fence**: every write of a running operation names its token (`Run.save`); when another job holds the row
  (a retry, a cancel, the poller) the write matches nothing and the step stops with `Superseded`.
- **Steps** are named; each is audited when done and marked in `progress`, so a rerun after a crash converges.
- **Wait** never sleeps long in a worker: the operation is queued again later (`Wait`), checks back first when
  it expects Kaltura done (`Operation.expected_wait`), then with a backoff (ARCHIVE_WAIT_FIRST_CHECK_SECONDS,
  doubling), each check one cheap request (`Operation.read_kaltura`),
  and fails with a reason once `ARCHIVE_REPLACEMENT_DEADLINE_HOURS` have passed.
- **End**: FAILED for an expected refusal (with its reason, and recorded versus live identity in the audit
  event), ERRORED for a crash (traceback in the log); transient errors keep the claim for RQ's retry.
- **Kaltura's content** is replaced (with the placeholder, or with the original on restore) by one function,
  which re-reads live state right before `media.updateContent`, and waited on by one function.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from archive_app import audit
from archive_app.archive import tags
from archive_app.archive.workflow import ContentId, LiveState, Step, read_live_state, with_progress
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.redaction import redact
from archive_app.lib.storage import ArchiveStore, ObjectState, StorageError
from archive_app.mirror import sync
from archive_app.models import AuditEvent, BatchItem, EntryLock, FlavorStatus

log = logging.getLogger(__name__)

# Replacement status "failed" (newer Kaltura servers, DOMAIN.md §7).
REPLACEMENT_FAILED = 4


class Wait(Exception):
    """Kaltura (or S3) is still working: the operation is queued again after `delay`, never slept on."""

    def __init__(self, reason: str, delay: timedelta = timedelta(seconds=30)) -> None:
        super().__init__(reason)
        self.delay = delay


class Refused(Exception):
    """The live state does not allow what was approved: FAILED with this reason, nothing more is done."""

    def __init__(self, reason: str, details: dict | None = None) -> None:
        super().__init__(reason)
        self.details = details


class Superseded(Exception):
    """Another job holds the operation now (a retry, a cancel, the poller): stop quietly."""


@dataclass
class Outcome:
    """What a plan says the runner should do: steps to run, or a reason to skip, or nothing left to do."""

    steps: tuple[Step, ...] = ()
    skip_reason: str = ""
    done: bool = False
    summary: str = ""


class Operation:
    """One kind of operation: what differs between a batch item and a restore. Subclasses set the fields."""

    model: Any  # the row's model class: BatchItem or Restore
    lock_prefix: str  # "item" or "restore"
    message_field: str  # where the reason goes on the row
    done_status: str
    skipped_status: str
    failed_status: str
    errored_status: str
    waiting_status: str | None  # None: the phase status stays while waiting
    steps: dict
    # Steps that take no time and write nothing to the entry: after them the job's last read of the entry is
    # still the read right before the next step (Run.fresh_entry); after any other step it is read again.
    quick_steps: frozenset[str] = frozenset()
    # Once this operation's own replacement is under way, its steps left only see it through in Kaltura: the
    # S3 copy was checked right before media.updateContent, and reading it again would decide nothing.
    s3_done_once_replacing: bool = False

    def claimable(self):
        """The rows a job with this token may take."""
        raise NotImplementedError

    def claim_changes(self, now: datetime) -> dict:
        raise NotImplementedError

    def load(self, pk: int):
        return self.model.objects.get(pk=pk)

    def user(self, row):
        raise NotImplementedError

    def batch(self, row):
        return None

    def audit_details(self, row) -> dict:
        return {}

    def plan(self, run: Run) -> Outcome:
        raise NotImplementedError

    def reschedule(self, row, delay: timedelta) -> None:
        raise NotImplementedError

    def read_kaltura(self, run: Run) -> tuple | None:
        """Before the full read of live state: raise Wait if a cheap check shows Kaltura still working, or
        return the (entry, flavors) just read, as the full read would read them; None: the full read reads."""
        return None

    def expected_wait(self, run: Run, what: str) -> timedelta | None:
        """How long Kaltura's `what` is expected to take, from what it took for others like it; None: unknown."""
        return None

    def ended(self, run: Run, status: str) -> None:
        """After the row reached an end state (batch progress, a restore's done event)."""

    def audit_action(self, row, action: str) -> str:
        """The audit event's name for an end: skip, refused, failed, errored."""
        return f"{self.lock_prefix}_{action}"


def holder(operation: Operation, pk: int) -> str:
    return f"{operation.lock_prefix}:{pk}"


def describe_holder(holder_text: str) -> str:
    """`item:12` → words naming what holds the entry, for a refusal's reason."""

    kind, _, pk = holder_text.partition(":")
    if kind == "item":
        batch_id = BatchItem.objects.filter(pk=pk).values_list("batch_id", flat=True).first() if pk else None
        return f"another batch{f' (batch {batch_id})' if batch_id else ''} is working on this entry"
    return f"a restore of this entry is under way (restore {pk})"


def _take_lock(entry_id: str, holder_text: str) -> str:
    """Take the entry's lock for `holder_text` (again, if it has it already); '' or who holds it instead."""
    lock, _ = EntryLock.objects.get_or_create(entry_id=entry_id, defaults={"holder": holder_text})
    return "" if lock.holder == holder_text else lock.holder


def release_lock(operation: Operation, row) -> None:
    EntryLock.objects.filter(entry_id=row.entry_id, holder=holder(operation, row.pk)).delete()


def claim(operation: Operation, pk: int, token: str):
    """Take the row for this job (or its RQ retry, which carries the same token) and the entry's lock.

    Returns (row, "") when taken; (None, who) when the entry is another operation's; (None, "") when the row is
    not this job's to run (another token, or ended).
    """
    model = operation.model
    entry_id = model.objects.filter(pk=pk).values_list("entry_id", flat=True).first()
    if entry_id is None:
        return None, ""
    try:
        with transaction.atomic():
            taken = operation.claimable().filter(pk=pk, job_id=token).update(**operation.claim_changes(timezone.now()))
            if taken != 1:
                return None, ""
            other = _take_lock(entry_id, holder(operation, pk))
            if other:
                transaction.set_rollback(True)
                return None, other
    except IntegrityError:
        # A batch item's own partial unique index: another item of this entry is running (its lock is older).
        return None, "item:"
    return operation.load(pk), ""


def refuse_claim(operation: Operation, pk: int, token: str, held_by: str) -> None:
    """The entry is another operation's: this one fails with a reason (audited), its row untouched otherwise."""
    row = operation.load(pk)
    reason = f"{describe_holder(held_by)}; retry when it has finished"
    ended = (
        operation.model.objects.filter(pk=pk, job_id=token)
        .exclude(status__in=[operation.done_status, operation.skipped_status])
        .update(**{"status": operation.failed_status, operation.message_field: reason, "finished_at": timezone.now()})
    )
    if ended:
        audit.record(
            operation.audit_action(row, "refused"),
            user=operation.user(row),
            entry_id=row.entry_id,
            batch=operation.batch(row),
            dry_run=False,
            outcome=AuditEvent.Outcome.REFUSED,
            message=reason,
            details={**operation.audit_details(row), "held_by": held_by},
        )
        row.refresh_from_db()
        operation.ended(Run(operation, row, None, None, operation.user(row)), operation.failed_status)


@dataclass
class Run:
    """One job's hold on one operation: the row, the services, the live state, and the fenced writes."""

    operation: Operation
    row: Any  # a BatchItem or a Restore, as the operation says
    kaltura: Kaltura | None
    store: ArchiveStore | None
    user: object
    state: LiveState | None = None
    scratch: dict = field(default_factory=dict)  # what one step hands the next within this job

    @property
    def entry_id(self) -> str:
        return self.row.entry_id

    @property
    def progress(self) -> dict:
        return self.row.progress

    @property
    def s3(self) -> ObjectState | None:
        """The S3 object as HEAD showed it when the job read the state (LiveState.head)."""
        return self.state.head

    def save(self, **fields) -> None:
        """Write fields (and a heartbeat) only while this job still holds the row."""
        fields["heartbeat_at"] = timezone.now()
        if "progress" in fields:
            fields["progress"] = {**self.row.progress, **fields["progress"]}
        model = self.operation.model
        held = model.objects.filter(pk=self.row.pk, job_id=self.row.job_id, status__in=model.ACTIVE)
        if held.update(**fields) != 1:
            raise Superseded(f"{self.operation.lock_prefix} {self.row.pk} is now held by another job")
        for name, value in fields.items():
            setattr(self.row, name, value)

    def save_progress(self, **progress) -> None:
        self.save(progress=progress)

    def audit(self, action: str, *, outcome: str = AuditEvent.Outcome.OK, message: str = "", details=None) -> None:
        audit.record(
            action,
            user=self.user,
            entry_id=self.entry_id,
            batch=self.operation.batch(self.row),
            dry_run=False,
            outcome=outcome,
            message=message,
            details={**self.operation.audit_details(self.row), **(details or {})},
        )

    def read_state(self, kaltura_state=None) -> LiveState:
        """Live Kaltura and S3, as this operation sees them (see workflow.with_progress). `kaltura_state`: the
        (entry, flavors) this job has just read, so they are not asked for twice."""
        state = read_live_state(
            self.entry_id,
            self.kaltura,
            self.store,
            kaltura_state=kaltura_state,
            progress=self.progress if self.operation.s3_done_once_replacing else None,
        )
        self.state = with_progress(state, self.progress)
        self.note_live(self.state.entry, self.state.flavors)
        return self.state

    def note_live(self, entry, flavors) -> None:
        """The latest entry (and flavors; None: changing, e.g. a replacement sent) Kaltura answered this job,
        which end() puts in the mirror instead of reading them again."""
        self.scratch["live_entry"] = entry
        self.scratch["live_flavors"] = flavors
        # What this job read last, until it writes to the entry: a step that acts on it right after may use it.
        self.scratch["read_entry"] = entry if flavors is not None else None

    def fresh_entry(self):
        """The entry as this job last read it, if nothing was written to it since (None: read it again)."""
        return self.scratch.get("read_entry")


def execute(operation: Operation, pk: int, token: str, *, kaltura=None, store=None):
    """Move one operation as far as it can go now. Returns the row, or None if it was not this job's."""
    row, held_by = claim(operation, pk, token)
    if row is None:
        if held_by:
            refuse_claim(operation, pk, token, held_by)
            return operation.load(pk)
        return None
    run = Run(operation, row, None, None, operation.user(row))
    try:
        run.kaltura = kaltura or Kaltura.from_settings()
        run.store = store or ArchiveStore.from_settings()
        run.read_state(operation.read_kaltura(run))
        outcome = operation.plan(run)
        if outcome.done:
            end(run, operation.done_status, outcome.summary)
            return run.row
        if outcome.skip_reason:
            end(
                run,
                operation.skipped_status,
                outcome.skip_reason,
                outcome=AuditEvent.Outcome.SKIPPED,
                action="skip",
                details=run.state.identity(),
            )
            return run.row
        for step in outcome.steps:
            details = operation.steps[step.name](run) or {}
            if step.name not in operation.quick_steps:
                run.scratch["read_entry"] = None
            run.audit(step.name, details=details)
            run.save_progress(**{f"done_{step.name}": True})
        end(run, operation.done_status, outcome.summary)
        return run.row
    except Superseded as superseded:
        log.info("%s", superseded)
        return None
    except Wait as waiting:
        try:
            changes = {operation.message_field: str(waiting)}
            if operation.waiting_status:
                changes["status"] = operation.waiting_status
            run.save(**changes)
        except Superseded:
            return None  # cancelled meanwhile
        if waiting.delay:
            operation.reschedule(run.row, waiting.delay)
        return run.row
    except Refused as refused:
        details = refused.details if refused.details is not None else (run.state.identity() if run.state else {})
        _end_quietly(run, operation.failed_status, str(refused), AuditEvent.Outcome.REFUSED, "refused", details)
        return run.row
    except (KalturaError, StorageError, requests.RequestException, OSError) as exc:
        message = f"{type(exc).__name__}: {exc}"
        transient = getattr(exc, "transient", False)
        if transient and _rq_will_retry():
            # RQ's retry takes it again with the same token; the claim and the entry's lock stay meanwhile, so
            # nothing (a librarian's retry included) can start the entry under it.
            try:
                run.save(**{operation.message_field: redact(f"{message} (will retry)")[:4000]})
            except Superseded:
                return None
            run.audit("step_failed", outcome=AuditEvent.Outcome.FAILED, message=f"{message} (will retry)")
            raise
        _end_quietly(run, operation.failed_status, message, AuditEvent.Outcome.FAILED, "failed", None)
        if transient:
            raise  # RQ keeps the failed job, with its error, on its dashboard
        return run.row
    except Exception as exc:
        log.exception("%s %s of %s crashed", operation.lock_prefix, pk, row.entry_id)
        message = f"{type(exc).__name__}: {exc} (an error in the program: the traceback is in the worker's log)"
        _end_quietly(run, operation.errored_status, message, AuditEvent.Outcome.FAILED, "errored", None)
        return run.row


def _rq_will_retry() -> bool:
    """Whether the RQ job running this has retries left (none when run outside RQ)."""
    from rq import get_current_job

    job = get_current_job()
    return bool(job is not None and job.retries_left)


def _end_quietly(run: Run, status: str, message: str, outcome: str, action: str, details) -> None:
    try:
        end(run, status, message, outcome=outcome, action=action, details=details)
    except Superseded as superseded:
        log.info("%s", superseded)


def end(run: Run, status: str, message: str, *, outcome: str | None = None, action: str = "", details=None) -> None:
    """The operation's end: status, reason and the entry's lock released together; audited unless done."""
    operation = run.operation
    message = redact(message)[:4000]  # it may quote Kaltura, S3 or a download URL: no secrets in the page
    with transaction.atomic():
        run.save(**{"status": status, operation.message_field: message, "finished_at": timezone.now()})
        release_lock(operation, run.row)
    if action:
        run.audit(operation.audit_action(run.row, action), outcome=outcome, message=message, details=details)
    # The pages show what the job did without waiting for a sync: from what Kaltura last answered this job.
    entry, flavors = run.scratch.get("live_entry"), run.scratch.get("live_flavors")
    if entry is not None and flavors is not None:
        sync.store_live(entry, flavors)
    else:
        sync.refresh_entries([run.entry_id], run.kaltura)
    operation.ended(run, status)


# --- waiting, with a deadline ------------------------------------------------------------------


# The longest pause between two checks of a wait on Kaltura: a conversion takes seconds to an hour.
MAX_CHECK_INTERVAL = timedelta(minutes=5)
# The latest a first check is put off to, however long others took.
MAX_EXPECTED_WAIT = timedelta(minutes=30)


def wait_or_give_up(run: Run, reason: str, *, what: str, hours: int | None = None, delay: timedelta | None = None):
    """Raise Wait (check again later), or Refused once the wait has lasted `hours` (the setting by default).

    Without a `delay`, checks back first when the operation expects `what` done (Operation.expected_wait), or
    after ARCHIVE_WAIT_FIRST_CHECK_SECONDS, then with a backoff from that setting, twice as long each time, at
    most MAX_CHECK_INTERVAL; the worker is free meanwhile."""
    hours = hours or settings.ARCHIVE_REPLACEMENT_DEADLINE_HOURS
    key, checks_key = f"waiting_since_{what}", f"checks_{what}"
    since = run.progress.get(key)
    checks = run.progress.get(checks_key, 0)
    now = timezone.now()
    if since is not None and now - datetime.fromisoformat(since) > timedelta(hours=hours):
        raise Refused(
            f"Kaltura did not finish the {what} in {hours} hours"
            if what != "s3 restore"
            else f"S3 did not make a readable copy in {hours} hours"
        )
    run.save_progress(**{key: since or now.isoformat(), checks_key: checks + 1})
    if delay is None:
        first = timedelta(seconds=settings.ARCHIVE_WAIT_FIRST_CHECK_SECONDS)
        # The first check is due when others like it were done (a check costs a Kaltura request and a job);
        # later ones back off from the setting.
        expected = run.operation.expected_wait(run, what) if checks == 0 else None
        if expected is not None:
            delay = min(max(first, expected), MAX_EXPECTED_WAIT)
        else:
            delay = min(first * 2 ** min(checks, 20), MAX_CHECK_INTERVAL)
    raise Wait(reason, delay=delay)


# --- Kaltura's content: replaced by one function, waited on by one ---------------------------------


def send_replacement(run: Run, upload_token: str, *, still_allowed, add_tags: tuple[str, ...] = ()) -> dict:
    """media.updateContent with this upload, after reading live state again: `still_allowed(state)` gives ''
    or the reason it is no longer allowed (exemption, a play, a category, content that changed...).

    `add_tags`: tags written from the same read, in the same request as media.updateContent (a refusal
    writes none: the caller knows whether the entry is owed them anyway)."""
    state = run.read_state()
    reason = still_allowed(state)
    if reason:
        raise Refused(f"checked again right before media.updateContent: {reason}", state.identity())
    original = state.original
    current, wanted = tags.merged(state.entry.tags, add=add_tags)
    # Marked before the call: if the answer is lost, a rerun knows the replacement may be ours; and what it
    # replaced, so a rerun can tell a swap done from a replacement Kaltura never took.
    run.save_progress(
        replace_requested=True,
        replaced_from=asdict(ContentId.of(original)),
        replace_requested_at=timezone.now().isoformat(),
    )
    run.note_live(state.entry, None)  # the flavors are about to change: end() reads them again
    details = {"replacement": "started", "upload_token": upload_token, "replaced": ContentId.of(original).as_dict()}
    try:
        _, tagged = run.kaltura.replace_content(run.entry_id, upload_token, tags=wanted if wanted != current else None)
    except KalturaError as exc:
        if exc.code != "ENTRY_REPLACEMENT_ALREADY_EXISTS":
            run.save_progress(replace_requested=False)
            raise
        return details  # a rerun's: the tags are the next steps' to write
    if isinstance(tagged, KalturaError):
        details["tags"] = f"not written: {tagged} (written once the placeholder is in)"
    elif tagged is not None:
        tags.store_in_mirror(tagged)
        details.update(tags_before=", ".join(current), tags_after=tagged.tags)
    return details


def wait_for_swap(run: Run, *, expected_size, what: str) -> ContentId:
    """Until Kaltura has swapped in the new content: its original is READY, no replacement is pending, and it
    is no longer the content replaced. `expected_size(flavor)` says whether the new original is what we sent.

    Each check is one request (entry and flavors in a multirequest); the first is the job's own read of live
    state unless the job has just sent the replacement. Polls in place for at most
    ARCHIVE_REPLACEMENT_WAIT_SECONDS (default 0: one check), then queues the operation again (Wait, with a
    backoff); fails with a reason when Kaltura's conversion failed, when Kaltura never took the replacement,
    when the new content is not what we sent, or past the deadline.
    """
    before = ContentId(**run.progress["replaced_from"]) if run.progress.get("replaced_from") else None
    poll_until = time.monotonic() + settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS
    latest = run.scratch.get("live_flavors") is not None and run.state is not None
    if not latest and settings.ARCHIVE_REPLACEMENT_WAIT_SECONDS == 0:
        # Just sent: no conversion is done this soon; check back later rather than ask now.
        wait_or_give_up(run, f"Kaltura is converting the {what}", what=what)
    while True:
        if latest:
            entry, flavors = run.state.entry, run.state.flavors
            latest = False
        else:
            entry, flavors = run.kaltura.entry_and_flavors(run.entry_id)
            run.note_live(entry, flavors)
        original = next((f for f in flavors if f.is_original), None)
        if entry.replacement_status == REPLACEMENT_FAILED:
            raise Refused(
                f"Kaltura's conversion of the {what} failed (replacement status {REPLACEMENT_FAILED}); "
                "the entry still plays its earlier content"
            )
        swapped = before is None or not before.matches(original)
        if not entry.replacing_entry_id and original is not None and swapped:
            if original.status == FlavorStatus.READY:
                if not expected_size(original):
                    raise Refused(
                        f"Kaltura finished a replacement, but its original is now {ContentId.of(original).describe()}"
                        f", not what this {what} sent: someone else replaced the media meanwhile",
                        {"live": ContentId.of(original).as_dict()},
                    )
                return ContentId.of(original)
            if original.status == FlavorStatus.ERROR:
                raise Refused(f"Kaltura's conversion of the {what} failed (original flavor status ERROR)")
        elif not entry.replacing_entry_id and not swapped:
            raise Refused(
                f"Kaltura did not take the {what}: no replacement is pending and the original is "
                f"still {before.describe()}; retry to send it again"
            )
        if time.monotonic() >= poll_until:
            wait_or_give_up(run, f"Kaltura is still converting the {what}", what=what)
        time.sleep(1)


def write_tags(run: Run, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = (), thumbnail: bool = False) -> dict:
    """A step's tag write (tags.write_tags_reading), from this step's fresh read: never one made before a copy.
    `thumbnail`: the thumbnail cut from the new content in the same request."""
    details, entry = tags.write_tags_reading(
        run.kaltura, run.entry_id, add=add, remove=remove, fresh=run.fresh_entry(), thumbnail=thumbnail
    )
    if entry is not None:
        run.scratch["live_entry"], run.scratch["read_entry"] = entry, None
    return details
