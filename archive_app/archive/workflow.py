"""Plans (the dry run) for archiving to S3 and replacing with the placeholder, and the live state they read.

A plan is computed by a pure function from the live state of one entry: Kaltura's
entry and flavors, the S3 object, and our record of the copy, and from PlanSettings. The preview shows
plans; a job (batches.py, through runner.py) reads the live state again, recomputes the plan and performs
exactly its steps. There is no "dry run" flag threaded through the code: not executing a
plan is the dry run, so the preview and the execution cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from archive_app.lib.kaltura import KalturaError, KEntry, KFlavor
from archive_app.lib.storage import ARCHIVE_CLASSES, ObjectState, ObjectSummary
from archive_app.models import (
    TAG_ARCHIVED,
    TAG_EXEMPT,
    TAG_REPLACED,
    ArchiveCopy,
    Batch,
    EntryStatus,
    FlavorStatus,
    LegalHold,
    MediaType,
    split_tags,
)
from archive_app.scheduling.exemptions import excluded_category_ids
from archive_app.web.wording import binary_size

# Kaltura source types whose content is not a file Kaltura holds (URL, live, search providers...).
FILE_SOURCE_TYPES = {"", "1", "2"}  # FILE, WEBCAM (a recorded upload)


@dataclass(frozen=True)
class PlanSettings:
    """The settings a plan depends on, passed in so plans stay pure."""

    now: datetime
    min_age_days: int = 365
    min_unplayed_days: int = 365
    exempt_category_ids: frozenset[int] = frozenset()
    placeholder_size: int = 0
    # 0: no audio placeholder file, so audio entries are not replaced (a video placeholder would be silence).
    placeholder_audio_size: int = 0
    storage_class: str = "GLACIER"
    min_bytes_freed: int = 0
    # Byte counts a placeholder we never recorded (the old tool's) may have: ours now and earlier ones.
    known_placeholder_sizes: frozenset[int] = frozenset()

    @classmethod
    def from_settings(cls, now: datetime) -> PlanSettings:
        from django.conf import settings

        video, audio = _file_size(settings.PLACEHOLDER_VIDEO), _file_size(settings.PLACEHOLDER_AUDIO)
        return cls(
            now=now,
            min_age_days=settings.ARCHIVE_MIN_AGE_DAYS,
            min_unplayed_days=settings.ARCHIVE_MIN_UNPLAYED_DAYS,
            # The setting's and the exemptions page's categories, with their sub-categories.
            exempt_category_ids=excluded_category_ids(),
            placeholder_size=video,
            placeholder_audio_size=audio,
            storage_class=settings.ARCHIVE_STORAGE_CLASS,
            min_bytes_freed=settings.ARCHIVE_MIN_BYTES_FREED,
            known_placeholder_sizes=frozenset(
                size for size in (video, audio, *settings.PLACEHOLDER_PREVIOUS_SIZES) if size
            ),
        )

    def placeholder_for(self, entry: KEntry) -> int:
        """The size of the placeholder this entry would get: the audio one for audio entries."""
        if entry.media_type == MediaType.AUDIO:
            return self.placeholder_audio_size
        return self.placeholder_size


def _file_size(path) -> int:
    return path.stat().st_size if path.is_file() else 0


@dataclass(frozen=True)
class ContentId:
    """The identity of one content of a Kaltura flavor: Kaltura changes `version` whenever the bytes change."""

    flavor_id: str
    version: str
    size: int

    @classmethod
    def of(cls, flavor: KFlavor) -> ContentId:
        return cls(flavor.id, flavor.version, flavor.size_bytes)

    def matches(self, flavor: KFlavor | None) -> bool:
        return (
            flavor is not None
            and bool(self.version)
            and (flavor.id, flavor.version) == (self.flavor_id, self.version)
            and sizes_agree(self.size, flavor)
        )

    def describe(self) -> str:
        return f"flavor {self.flavor_id} version {self.version or '?'} ({self.size:,} bytes)"

    def as_dict(self) -> dict:
        return {"flavor_id": self.flavor_id, "version": self.version, "bytes": self.size}


@dataclass(frozen=True)
class CopyRecord:
    """What the database says about the entry's latest archive copy: which content it holds, and where."""

    size: int
    sha256: str
    crc32: str = ""
    replaced: bool = False
    flavor_id: str = ""
    flavor_version: str = ""
    key: str = ""
    version_id: str = ""
    sha256_source: str = "stream"
    # The placeholder Kaltura held once the swap was done; None before, or for a placeholder we never saw.
    placeholder: ContentId | None = None

    @property
    def content(self) -> ContentId:
        return ContentId(self.flavor_id, self.flavor_version, self.size)

    def holds(self, flavor: KFlavor | None) -> bool:
        """Rule: this copy is of exactly the content `flavor` has now (same flavor id, version, byte count)."""
        return self.content.matches(flavor)

    @classmethod
    def from_model(cls, copy) -> CopyRecord:
        placeholder = None
        if copy.placeholder_flavor_id:
            placeholder = ContentId(copy.placeholder_flavor_id, copy.placeholder_version, copy.placeholder_size or 0)
        return cls(
            size=copy.size_bytes,
            sha256=copy.sha256,
            crc32=copy.crc32,
            replaced=copy.replaced_at is not None,
            flavor_id=copy.flavor_id,
            flavor_version=copy.flavor_version,
            key=copy.key,
            version_id=copy.version_id,
            sha256_source=copy.sha256_source,
            placeholder=placeholder,
        )


@dataclass(frozen=True)
class LiveState:
    entry_id: str
    entry: KEntry | None  # None: not in Kaltura
    flavors: list[KFlavor] = field(default_factory=list)
    # The S3 object of the recorded copy (its key and version); with no copy recorded, the one at the entry id.
    s3: ObjectState | ObjectSummary | None = None
    copy: CopyRecord | None = None
    # Set by the executor when this operation's own replacement is under way in Kaltura.
    replacement_started: bool = False
    # The refusal of a legal hold on the entry (LegalHold.refusal), read with the rest: "" when not held.
    legal_hold: str = ""

    @property
    def head(self) -> ObjectState | None:
        """The S3 object as HEAD showed it (read_live_state reads one object so); None without one, and for a
        listing's summary (read_live_states, for previews), which has no version, hashes or restore state."""
        return None if isinstance(self.s3, ObjectSummary) else self.s3

    @property
    def original(self) -> KFlavor | None:
        return next((f for f in self.flavors if f.is_original), None)

    @property
    def tags(self) -> list[str]:
        return [t.lower() for t in split_tags(self.entry.tags)] if self.entry else []

    @property
    def on_placeholder(self) -> bool:
        """Either tool's tag says Kaltura's content is a placeholder."""
        return TAG_REPLACED in self.tags

    def identity(self) -> dict:
        """Recorded versus live identity, for the audit event of a refusal or a skip."""
        original = self.original
        details: dict = {"live": ContentId.of(original).as_dict() if original else None}
        if self.copy is not None:
            details["recorded_copy"] = {
                **self.copy.content.as_dict(),
                "sha256": self.copy.sha256,
                "key": self.copy.key,
                "version_id": self.copy.version_id,
            }
            if self.copy.placeholder is not None:
                details["recorded_placeholder"] = self.copy.placeholder.as_dict()
        if self.s3 is not None:
            details["s3"] = {
                "key": self.s3.key,
                "bytes": self.s3.size,
                "sha256": getattr(self.s3, "sha256", None),
                "version_id": getattr(self.s3, "version_id", None),
            }
        return details


@dataclass(frozen=True)
class Step:
    name: str
    description: str


class StepsPlan:
    """What every plan (this module's and restores.RestorePlan) answers from its steps and skip reason."""

    steps: tuple[Step, ...]
    skip_reason: str

    @property
    def skipped(self) -> bool:
        return bool(self.skip_reason)

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def summary(self) -> str:
        if self.skipped:
            return f"skip: {self.skip_reason}"
        return ", ".join(self.step_names)


@dataclass(frozen=True)
class Plan(StepsPlan):
    entry_id: str
    action: str
    steps: tuple[Step, ...] = ()
    skip_reason: str = ""
    bytes_to_copy: int = 0
    bytes_freed: int = 0
    # Recorded versus live identity, for the audit event of a skip (set by whoever read the state).
    identity: dict = field(default_factory=dict, compare=False)


def sizes_agree(streamed: int, flavor: KFlavor) -> bool:
    """Kaltura's size is exact in sizeInBytes when non-zero, else whole KB (rounded either way)."""
    if flavor.size_in_bytes:
        return streamed == flavor.size_in_bytes
    return abs(streamed / 1024 - flavor.size_kb) <= 1


def _why_not(state: LiveState, plan_settings: PlanSettings) -> str:
    """The reason no work may be done on this entry at all, or ''."""
    entry = state.entry
    if entry is None:
        return "not found in Kaltura"
    if entry.status == EntryStatus.DELETED:
        return "deleted in Kaltura"
    if entry.status != EntryStatus.READY:
        label = EntryStatus(entry.status).label if entry.status in EntryStatus.values else entry.status
        return f"entry is not ready (status {label})"
    if TAG_EXEMPT in state.tags:
        return f"exempt (tag {TAG_EXEMPT})"
    exempt = plan_settings.exempt_category_ids.intersection(entry.categories_ids)
    if exempt:
        return f"exempt (category {', '.join(str(c) for c in sorted(exempt))})"
    if entry.source_type not in FILE_SOURCE_TYPES:
        return f"external or source-only content (source type {entry.source_type})"
    if entry.parent_entry_id:
        return f"secondary stream of multi-stream entry {entry.parent_entry_id}"
    if "quiz" in entry.capabilities.lower():
        return "quiz entry"
    if entry.replacing_entry_id and not state.replacement_started:
        return "a replacement is already pending in Kaltura"
    if entry.created_at > plan_settings.now - timedelta(days=plan_settings.min_age_days):
        return f"created less than {plan_settings.min_age_days} days ago"
    if entry.last_played_at and entry.last_played_at > plan_settings.now - timedelta(
        days=plan_settings.min_unplayed_days
    ):
        return f"played less than {plan_settings.min_unplayed_days} days ago"
    original = state.original
    if original is None:
        return "no original flavor"
    if original.status != FlavorStatus.READY and not state.replacement_started:
        return f"original flavor is not ready (status {original.status})"
    return ""


def content_changed(state: LiveState) -> str:
    """'' when the recorded copy holds exactly Kaltura's original now; else what differs, in words."""
    copy, original = state.copy, state.original
    if copy is None or original is None or copy.holds(original):
        return ""
    if not copy.flavor_version:
        return f"the recorded copy ({copy.content.describe()}) predates content versions"
    return f"Kaltura's original is now {ContentId.of(original).describe()}; the copy holds {copy.content.describe()}"


def _adopt_from_s3_steps(state: LiveState) -> list[Step]:
    """An old-tool archive behind a placeholder: hash the S3 object itself (restoring it from Glacier first)."""
    s3 = state.s3
    steps = []
    if getattr(s3, "needs_restore", s3.storage_class in ARCHIVE_CLASSES):
        steps.append(
            Step(
                "s3_restore",
                f"ask S3 for a readable copy of the {s3.storage_class} object "
                "(Bulk: 5–12 hours; a retrieval fee per GB)",
            )
        )
        steps.append(Step("s3_wait", "wait until S3 has a readable copy (checked again later)"))
    steps.append(
        Step(
            "adopt_hash",
            f"read the {binary_size(s3.size)} object in S3 and record its SHA-256 (adopted: hash computed from S3)",
        )
    )
    return steps


VERIFY_STEP = "check bytes streamed = S3 size = Kaltura's size; record SHA-256 and version; write the metadata sidecar"


def plan_archive(state: LiveState, plan_settings: PlanSettings) -> Plan:
    """Copy the original to S3 and tag the entry archived_to_s3.

    Before: the entry is READY with a READY original that is not a placeholder. After: a verified copy of exactly
    that content (flavor id, version, bytes, SHA-256 on the stream) is recorded and the entry carries the tag.
    Nothing is written to a key that exists: the first copy takes the entry id's key, a copy of changed content
    a key of its own, so every earlier copy stays.
    """
    if state.legal_hold:
        return Plan(state.entry_id, "archive", skip_reason=state.legal_hold)
    if state.entry is not None and state.on_placeholder:
        # Kaltura's content is the placeholder (either tool's tag): copying it would archive the placeholder.
        if state.copy is not None:
            return Plan(state.entry_id, "archive", skip_reason="already replaced")
        if state.s3 is None:
            return Plan(
                state.entry_id,
                "archive",
                skip_reason=f"on a placeholder (tag {TAG_REPLACED}) but no archive copy is in S3",
            )
        return Plan(state.entry_id, "archive", tuple(_adopt_from_s3_steps(state)))
    reason = _why_not(state, plan_settings)
    if reason:
        return Plan(state.entry_id, "archive", skip_reason=reason)
    if state.replacement_started:
        # Our own replacement is under way or done (a rerun after a crash): what Kaltura holds, or is about to,
        # is the placeholder we sent. Copying it as "new content" would put a placeholder in the archive.
        if TAG_ARCHIVED in state.tags:
            return Plan(state.entry_id, "archive", skip_reason="already archived")
        return Plan(state.entry_id, "archive", (Step("tag_archived", f"add tag {TAG_ARCHIVED}"),))
    original = state.original
    steps: list[Step] = []
    copy_bytes = 0
    changed = content_changed(state)
    copy_ok = (
        state.copy is not None
        and bool(state.copy.sha256)
        and not changed
        and state.s3 is not None
        and state.s3.size == state.copy.size
    )
    has_sha = isinstance(state.s3, ObjectSummary) or getattr(state.s3, "sha256", None)
    copy_step = f"stream the original ({binary_size(original.size_bytes)}) to S3 {plan_settings.storage_class}"
    if changed and any(sizes_agree(size, original) for size in plan_settings.known_placeholder_sizes):
        # The "new content" is a placeholder (one of ours that Kaltura swapped in late, after its job gave up):
        # archiving it would put a placeholder where the original's copy belongs.
        return Plan(
            state.entry_id,
            "archive",
            skip_reason=f"Kaltura's original now has a placeholder's size "
            f"({original.size_bytes:,} bytes), not new content: "
            f"check the entry on the Health page",
        )
    if copy_ok:
        pass
    elif changed:
        copy_bytes = original.size_bytes
        steps.append(
            Step(
                "copy",
                f"archive the new content first ({changed}): {copy_step} under a new key; the earlier copy stays",
            )
        )
        steps.append(Step("verify", VERIFY_STEP))
    elif state.copy is None and state.s3 is not None and sizes_agree(state.s3.size, original) and has_sha:
        # A listing (previews) cannot show the SHA-256 tag; the job, which reads it, copies under a new key
        # when it is missing or names other content (the old tool's archives have no hash).
        steps.append(
            Step(
                "adopt",
                f"record the {binary_size(state.s3.size)} object already in S3 ({state.s3.storage_class}) if it "
                "carries our SHA-256 of this content; otherwise copy under a new key (the object stays)",
            )
        )
    else:
        copy_bytes = original.size_bytes
        if state.s3 is not None:
            verb = "copy under a new key (the S3 object at the entry id is kept untouched: it is not this content)"
        else:
            verb = "copy"
        steps.append(Step("copy", f"{verb}: {copy_step}"))
        steps.append(Step("verify", VERIFY_STEP))
    if TAG_ARCHIVED not in state.tags:
        steps.append(Step("tag_archived", f"add tag {TAG_ARCHIVED}"))
    if not steps:
        return Plan(state.entry_id, "archive", skip_reason="already archived")
    return Plan(state.entry_id, "archive", tuple(steps), bytes_to_copy=copy_bytes)


def replace_refusal(state: LiveState, plan_settings: PlanSettings, *, archive_first: bool = False) -> str:
    """Why the content may not be replaced with the placeholder now, or ''. Checked by the plan and again
    right before media.updateContent (`archive_first`: the archive steps planned just before make the copy)."""
    if state.legal_hold:
        return state.legal_hold
    reason = _why_not(state, plan_settings)
    if reason:
        return reason
    if state.entry.media_type == MediaType.IMAGE:
        return "image entry: only archiving its original is possible"
    if state.entry.media_type == MediaType.AUDIO and plan_settings.placeholder_for(state.entry) <= 0:
        return "no audio placeholder configured"
    if archive_first:
        return ""
    if state.copy is None:
        return "no archive copy recorded"
    if not state.copy.sha256:
        return "archive copy has no SHA-256 (archive it again)"
    changed = content_changed(state)
    if changed and not state.replacement_started:
        return f"archive the new content first: {changed}"
    if state.s3 is None:
        return "the archive copy is missing from S3"
    if state.s3.size != state.copy.size:
        return "the S3 object's size differs from the recorded copy"
    s3_sha = getattr(state.s3, "sha256", None)
    if s3_sha and s3_sha.lower() != state.copy.sha256.lower():
        return "the S3 object's SHA-256 differs from the recorded copy"
    return ""


def plan_replace(state: LiveState, plan_settings: PlanSettings, *, after_archive: Plan | None = None) -> Plan:
    """Replace the content with the placeholder, behind a verified copy of exactly that content.

    Before: a copy with a SHA-256 of the live original (same flavor id, version, bytes) is recorded and that S3
    version has its size (or the archive steps planned just before will make it so). After: Kaltura has swapped
    the flavors for the placeholder's, whose identity is recorded; the entry is still READY with the same id,
    and it carries flavors_deleted.
    """
    if state.replacement_started:
        return _see_replacement_through(state)
    if state.legal_hold:
        return Plan(state.entry_id, "replace", skip_reason=state.legal_hold)
    if state.entry is not None and state.on_placeholder:
        return Plan(state.entry_id, "replace", skip_reason="already replaced")
    archive_first = after_archive is not None and not after_archive.skipped
    reason = replace_refusal(state, plan_settings, archive_first=archive_first)
    if reason:
        return Plan(state.entry_id, "replace", skip_reason=reason)
    placeholder_size = plan_settings.placeholder_for(state.entry)
    freed = sum(f.size_bytes for f in state.flavors if f.status == FlavorStatus.READY)
    freed = max(0, freed - placeholder_size)
    if freed < plan_settings.min_bytes_freed:
        reason = (
            f"replacing would free only {binary_size(freed)}, less than {binary_size(plan_settings.min_bytes_freed)}"
        )
        return Plan(state.entry_id, "replace", skip_reason=f"{reason} (ARCHIVE_MIN_BYTES_FREED)")
    kind = "audio " if state.entry.media_type == MediaType.AUDIO else ""
    steps = [
        Step("upload_placeholder", f"upload the {kind}placeholder ({binary_size(placeholder_size)})"),
        Step("replace_content", "media.updateContent: the entry keeps playing until the swap"),
        *REPLACEMENT_STEPS,
        Step("tag_replaced", f"add tag {TAG_REPLACED}; record {binary_size(freed)} freed"),
    ]
    return Plan(state.entry_id, "replace", tuple(steps), bytes_freed=freed)


REPLACEMENT_STEPS = (
    Step("wait_replacement", "wait until Kaltura has made the new flavors; record the placeholder's identity"),
    Step("thumbnail", "set the thumbnail from the placeholder"),
)


def _see_replacement_through(state: LiveState) -> Plan:
    """Our media.updateContent was sent (state.replacement_started): what is left is to see it through and
    record the placeholder, or a restore could not find it. Nothing that changed after it was sent (a play of
    the content it replaces, an exemption, a hold, the S3 copy, which was checked right before it) can call
    it back, so nothing here refuses but an entry gone from Kaltura."""
    if state.entry is None:
        return Plan(state.entry_id, "replace", skip_reason="not found in Kaltura")
    if state.entry.status == EntryStatus.DELETED:
        return Plan(state.entry_id, "replace", skip_reason="deleted in Kaltura")
    steps = (*REPLACEMENT_STEPS, Step("tag_replaced", f"add tags {TAG_ARCHIVED} and {TAG_REPLACED}"))
    return Plan(state.entry_id, "replace", steps)


def plan_for(action: str, state: LiveState, plan_settings: PlanSettings) -> Plan:
    if action == Batch.Action.ARCHIVE:
        return plan_archive(state, plan_settings)
    if action == Batch.Action.REPLACE or state.replacement_started:
        return plan_replace(state, plan_settings)
    archive = plan_archive(state, plan_settings)
    if archive.skipped and archive.skip_reason != "already archived":
        return Plan(state.entry_id, action, skip_reason=archive.skip_reason)
    if state.on_placeholder and not state.replacement_started:
        # An old-tool placeholder being adopted: it is already replaced.
        return Plan(state.entry_id, action, archive.steps)
    replace = plan_replace(state, plan_settings, after_archive=archive)
    if replace.skipped:
        if archive.skipped:
            return Plan(state.entry_id, action, skip_reason=replace.skip_reason)
        return Plan(state.entry_id, action, archive.steps, bytes_to_copy=archive.bytes_to_copy)
    return Plan(
        state.entry_id,
        action,
        archive.steps + replace.steps,
        bytes_to_copy=archive.bytes_to_copy,
        bytes_freed=replace.bytes_freed,
    )


def with_progress(state: LiveState, progress: dict) -> LiveState:
    """The state as this operation sees it: `replacement_started` only when our updateContent was sent (per
    `progress`) AND Kaltura shows it, pending or done (the content it replaced is gone). If Kaltura shows
    neither, it never took: the operation starts over."""
    if not progress.get("replace_requested") or state.entry is None:
        return state
    before = progress.get("replaced_from")
    swapped = before is not None and not ContentId(**before).matches(state.original)
    if state.entry.replacing_entry_id or swapped:
        return dataclasses.replace(state, replacement_started=True)
    return state


# --- reading live state ---------------------------------------------------------------


def copy_record(entry_id: str) -> CopyRecord | None:
    """The entry's latest copy (of its latest archived content)."""
    copy = ArchiveCopy.objects.filter(entry_id=entry_id).first()
    return CopyRecord.from_model(copy) if copy is not None else None


def read_live_state(entry_id: str, kaltura, store, *, kaltura_state=None, progress: dict | None = None) -> LiveState:
    """Kaltura and S3 as they are now: the mirror is never proof. Kaltura's entry and flavors come in one
    request (`kaltura_state`: that pair, read by the caller just now). S3 is read at the recorded copy's exact
    key and version (the entry id's key when none is recorded), except, given the operation's `progress`,
    once its own replacement is under way (with_progress): no plan reads S3 then (plan_replace)."""

    try:
        entry, flavors = kaltura_state or kaltura.entry_and_flavors(entry_id)
    except KalturaError as exc:
        if exc.code == "ENTRY_ID_NOT_FOUND":
            return LiveState(entry_id, None)
        raise
    copy = copy_record(entry_id)
    hold = legal_holds([entry_id]).get(entry_id, "")
    state = LiveState(entry_id, entry, flavors=flavors, copy=copy, legal_hold=hold)
    if progress is not None and with_progress(state, progress).replacement_started:
        return state
    s3 = store.head(entry_id, key=copy.key, version_id=copy.version_id or None) if copy else store.head(entry_id)
    return dataclasses.replace(state, s3=s3)


def legal_holds(entry_ids: list[str]) -> dict[str, str]:
    """The refusal of each held entry among these."""
    return {
        hold.entry_id: hold.refusal
        for hold in LegalHold.objects.filter(entry_id__in=entry_ids).select_related("placed_by")
    }


def read_live_states(entry_ids: list[str], kaltura, store) -> dict[str, LiveState]:
    """Live state of many entries in few calls, for previews: entries, flavors and S3 listings in bulk."""
    entries = kaltura.entries_by_ids(entry_ids)
    flavors = kaltura.flavors_for_entries(list(entries)) if entries else {}
    objects = store.list_objects(entry_ids) if entry_ids else {}
    holds = legal_holds(entry_ids)
    copies: dict[str, CopyRecord] = {}
    for row in ArchiveCopy.objects.filter(entry_id__in=entry_ids):  # newest first: keep the first seen
        copies.setdefault(row.entry_id, CopyRecord.from_model(row))
    for entry_id, copy in copies.items():
        if copy.key != store.key_for(entry_id):
            # A copy of changed content, not in the listing of entry id keys. (The job reads every copy at its
            # exact version; a preview takes the listing's current version of the entry id's key.)
            objects[entry_id] = store.head(entry_id, key=copy.key, version_id=copy.version_id or None)
    return {
        entry_id: LiveState(
            entry_id,
            entries.get(entry_id),
            flavors=flavors.get(entry_id, []),
            s3=objects.get(entry_id),
            copy=copies.get(entry_id),
            legal_hold=holds.get(entry_id, ""),
        )
        for entry_id in entry_ids
    }
