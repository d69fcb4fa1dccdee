"""Plans (the dry run) and their execution, for archiving to S3 and replacing with the placeholder.

A plan is computed by a pure function from the live state of one entry: Kaltura's
entry and flavors, the S3 object, and our record of the copy. The preview shows
plans; a job reads the live state again, recomputes the plan and performs exactly
its steps. There is no "dry run" flag threaded through the code: not executing a
plan is the dry run, so the preview and the execution cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from archive_app.kaltura import KEntry, KFlavor
from archive_app.models import TAG_ARCHIVED, TAG_EXEMPT, TAG_REPLACED, Batch, EntryStatus, FlavorStatus, split_tags
from archive_app.storage import ObjectState, ObjectSummary

# Kaltura source types whose content is not a file Kaltura holds (URL, live, search providers...).
FILE_SOURCE_TYPES = {"", "1", "2"}  # FILE, WEBCAM (a recorded upload)


@dataclass(frozen=True)
class Policy:
    """The settings a plan depends on, passed in so plans stay pure."""

    now: datetime
    min_age_days: int = 365
    min_unplayed_days: int = 365
    exempt_category_ids: frozenset[int] = frozenset()
    placeholder_size: int = 0
    storage_class: str = "GLACIER"

    @classmethod
    def from_settings(cls, now: datetime) -> Policy:
        from django.conf import settings

        from archive_app.exemptions import excluded_category_ids

        return cls(
            now=now,
            min_age_days=settings.ARCHIVE_MIN_AGE_DAYS,
            min_unplayed_days=settings.ARCHIVE_MIN_UNPLAYED_DAYS,
            # The setting's and the exemptions page's categories, with their sub-categories.
            exempt_category_ids=excluded_category_ids(),
            placeholder_size=settings.PLACEHOLDER_VIDEO.stat().st_size if settings.PLACEHOLDER_VIDEO.is_file() else 0,
            storage_class=settings.ARCHIVE_STORAGE_CLASS,
        )


@dataclass(frozen=True)
class CopyRecord:
    """What the database says about the entry's archive copy."""

    size: int
    sha256: str
    crc32: str = ""
    replaced: bool = False

    @classmethod
    def from_model(cls, copy) -> CopyRecord:
        return cls(size=copy.size_bytes, sha256=copy.sha256, crc32=copy.crc32, replaced=copy.replaced_at is not None)


@dataclass(frozen=True)
class LiveState:
    entry_id: str
    entry: KEntry | None  # None: not in Kaltura
    flavors: list[KFlavor] = field(default_factory=list)
    s3: ObjectState | ObjectSummary | None = None
    copy: CopyRecord | None = None
    # Set by the executor when this item's own replacement is under way.
    replacement_started: bool = False

    @property
    def original(self) -> KFlavor | None:
        return next((f for f in self.flavors if f.is_original), None)

    @property
    def tags(self) -> list[str]:
        return [t.lower() for t in split_tags(self.entry.tags)] if self.entry else []


@dataclass(frozen=True)
class Step:
    name: str
    description: str


@dataclass(frozen=True)
class Plan:
    entry_id: str
    action: str
    steps: tuple[Step, ...] = ()
    skip_reason: str = ""
    bytes_to_copy: int = 0
    bytes_freed: int = 0

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


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def sizes_agree(streamed: int, flavor: KFlavor) -> bool:
    """Kaltura's size is exact in sizeInBytes when non-zero, else whole KB (rounded either way)."""
    if flavor.size_in_bytes:
        return streamed == flavor.size_in_bytes
    return abs(streamed / 1024 - flavor.size_kb) <= 1


def _why_not(state: LiveState, policy: Policy) -> str:
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
    exempt = policy.exempt_category_ids.intersection(entry.categories_ids)
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
    if entry.created_at > policy.now - timedelta(days=policy.min_age_days):
        return f"created less than {policy.min_age_days} days ago"
    if entry.last_played_at and entry.last_played_at > policy.now - timedelta(days=policy.min_unplayed_days):
        return f"played less than {policy.min_unplayed_days} days ago"
    original = state.original
    if original is None:
        return "no original flavor"
    if original.status != FlavorStatus.READY and not state.replacement_started:
        return f"original flavor is not ready (status {original.status})"
    return ""


def plan_archive(state: LiveState, policy: Policy) -> Plan:
    """Copy the original to S3 and tag the entry archived_to_s3.

    Before: the entry is READY with a READY original. After: a verified copy is
    recorded (size and SHA-256 on the stream) and the entry carries the tag.
    """
    reason = _why_not(state, policy)
    if reason:
        return Plan(state.entry_id, "archive", skip_reason=reason)
    original = state.original
    steps: list[Step] = []
    copy_bytes = 0
    copy_ok = state.copy is not None and bool(state.copy.sha256) and state.s3 is not None and (
        state.s3.size == state.copy.size
    )
    has_sha = isinstance(state.s3, ObjectSummary) or getattr(state.s3, "sha256", None)
    if copy_ok:
        pass
    elif state.s3 is not None and sizes_agree(state.s3.size, original) and has_sha:
        # A listing (previews) cannot show the SHA-256 tag; the job, which reads it, copies
        # again when it is missing (the old tool's archives have none).
        steps.append(
            Step(
                "adopt",
                f"record the {_gib(state.s3.size)} object already in S3 ({state.s3.storage_class}); "
                "copy again if it has no SHA-256",
            )
        )
    else:
        copy_bytes = original.size_bytes
        verb = "copy again (the S3 object's size differs)" if state.s3 is not None else "copy"
        steps.append(
            Step("copy", f"{verb}: stream the original ({_gib(copy_bytes)}) to S3 {policy.storage_class}")
        )
        steps.append(Step("verify", "check bytes streamed = S3 size = Kaltura's size; record SHA-256"))
    if TAG_ARCHIVED not in state.tags:
        steps.append(Step("tag_archived", f"add tag {TAG_ARCHIVED}"))
    if not steps:
        return Plan(state.entry_id, "archive", skip_reason="already archived")
    return Plan(state.entry_id, "archive", tuple(steps), bytes_to_copy=copy_bytes)


def _already_replaced(state: LiveState) -> bool:
    original = state.original
    return (
        TAG_REPLACED in state.tags
        and state.copy is not None
        and original is not None
        and original.size_bytes != state.copy.size
    )


def plan_replace(state: LiveState, policy: Policy, *, after_archive: Plan | None = None) -> Plan:
    """Replace the content with the placeholder, behind a verified copy.

    Before: a copy with a SHA-256 is recorded and the S3 object has its size (or
    the archive steps planned just before will make it so). After: Kaltura has
    swapped the flavors for the placeholder's, the entry is still READY with the
    same id, and it carries flavors_deleted.
    """
    if state.entry is not None and _already_replaced(state):
        return Plan(state.entry_id, "replace", skip_reason="already replaced")
    reason = _why_not(state, policy)
    if reason:
        return Plan(state.entry_id, "replace", skip_reason=reason)
    archive_will_copy = after_archive is not None and not after_archive.skipped
    if not archive_will_copy:
        if state.copy is None:
            return Plan(state.entry_id, "replace", skip_reason="no archive copy recorded")
        if not state.copy.sha256:
            return Plan(state.entry_id, "replace", skip_reason="archive copy has no SHA-256 (archive it again)")
        if state.s3 is None:
            return Plan(state.entry_id, "replace", skip_reason="the archive copy is missing from S3")
        if state.s3.size != state.copy.size:
            return Plan(state.entry_id, "replace", skip_reason="the S3 object's size differs from the recorded copy")
    freed = sum(f.size_bytes for f in state.flavors if f.status == FlavorStatus.READY)
    freed = max(0, freed - policy.placeholder_size)
    steps = []
    if not state.replacement_started:
        steps += [
            Step("upload_placeholder", f"upload the placeholder video ({_gib(policy.placeholder_size)})"),
            Step("replace_content", "media.updateContent: the entry keeps playing until the swap"),
        ]
    steps += [
        Step("wait_replacement", "wait until Kaltura has made the new flavors"),
        Step("thumbnail", "set the thumbnail from the placeholder"),
        Step("tag_replaced", f"add tag {TAG_REPLACED}; record {_gib(freed)} freed"),
    ]
    return Plan(state.entry_id, "replace", tuple(steps), bytes_freed=freed)


def plan_for(action: str, state: LiveState, policy: Policy) -> Plan:
    if action == Batch.Action.ARCHIVE:
        return plan_archive(state, policy)
    if action == Batch.Action.REPLACE:
        return plan_replace(state, policy)
    archive = plan_archive(state, policy)
    if archive.skipped and archive.skip_reason != "already archived":
        return Plan(state.entry_id, action, skip_reason=archive.skip_reason)
    replace = plan_replace(state, policy, after_archive=archive)
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


# --- reading live state ---------------------------------------------------------------


def copy_record(entry_id: str) -> CopyRecord | None:
    from archive_app.models import ArchiveCopy

    copy = ArchiveCopy.objects.filter(entry_id=entry_id).first()
    if copy is None:
        return None
    return CopyRecord.from_model(copy)


def read_live_state(entry_id: str, kaltura, store, *, replacement_started: bool = False) -> LiveState:
    """Kaltura and S3 as they are now: the mirror is never proof."""
    from archive_app.kaltura import KalturaError

    try:
        entry = kaltura.get_entry(entry_id)
    except KalturaError as exc:
        if exc.code == "ENTRY_ID_NOT_FOUND":
            return LiveState(entry_id, None)
        raise
    return LiveState(
        entry_id,
        entry,
        flavors=kaltura.flavors(entry_id),
        s3=store.head(entry_id),
        copy=copy_record(entry_id),
        replacement_started=replacement_started,
    )


def read_live_states(entry_ids: list[str], kaltura, store) -> dict[str, LiveState]:
    """Live state of many entries in few calls, for previews: entries, flavors and S3 listings in bulk."""
    from archive_app.models import ArchiveCopy

    entries = kaltura.entries_by_ids(entry_ids)
    flavors = kaltura.flavors_for_entries(list(entries)) if entries else {}
    objects = store.list_objects(entry_ids) if entry_ids else {}
    copies = {
        c.entry_id: CopyRecord.from_model(c)
        for c in ArchiveCopy.objects.filter(entry_id__in=entry_ids)
    }
    return {
        entry_id: LiveState(
            entry_id,
            entries.get(entry_id),
            flavors=flavors.get(entry_id, []),
            s3=objects.get(entry_id),
            copy=copies.get(entry_id),
        )
        for entry_id in entry_ids
    }
