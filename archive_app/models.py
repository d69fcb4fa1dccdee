"""The mirror of Kaltura (entries, flavors, categories) and the archive's own records.

The mirror is for browsing and selecting; jobs never treat it as proof of the live
state (they re-read Kaltura and S3 before acting).
"""

from __future__ import annotations

from django.db import models

from archive_app.lib.privacy import without_ips

# The old Princeton tool's tags, kept so its archives are recognised.
TAG_ARCHIVED = "archived_to_s3"
TAG_REPLACED = "flavors_deleted"
TAG_EXEMPT = "archive_exempt"


class EntryStatus(models.IntegerChoices):
    ERROR_IMPORTING = -2, "error importing"
    ERROR_CONVERTING = -1, "error converting"
    IMPORT = 0, "importing"
    PRECONVERT = 1, "converting"
    READY = 2, "ready"
    DELETED = 3, "deleted"
    PENDING = 4, "pending"
    MODERATE = 5, "moderate"
    BLOCKED = 6, "blocked"
    NO_CONTENT = 7, "no content"


class FlavorStatus(models.IntegerChoices):
    ERROR = -1, "error"
    QUEUED = 0, "queued"
    CONVERTING = 1, "converting"
    READY = 2, "ready"
    DELETED = 3, "deleted"
    NOT_APPLICABLE = 4, "not applicable"
    TEMP = 5, "temp"
    WAIT_FOR_CONVERT = 6, "waiting for convert"
    IMPORTING = 7, "importing"
    VALIDATING = 8, "validating"
    EXPORTING = 9, "exporting"


class MediaType(models.IntegerChoices):
    VIDEO = 1, "video"
    IMAGE = 2, "image"
    AUDIO = 5, "audio"
    LIVE_STREAM_FLASH = 201, "live stream"
    LIVE_STREAM_WINDOWS_MEDIA = 202, "live stream (WM)"
    LIVE_STREAM_REAL_MEDIA = 203, "live stream (RM)"
    LIVE_STREAM_QUICKTIME = 204, "live stream (QT)"


class ArchiveState(models.TextChoices):
    INITIAL = "initial", "not archived"
    ARCHIVED = "archived", "archived (copy in S3)"
    PLACEHOLDER = "placeholder", "placeholder (flavors freed)"


def split_tags(tags: str) -> list[str]:
    """Kaltura's tag string as a list; it joins with ", " but older writers used ","."""
    return [tag.strip() for tag in (tags or "").split(",") if tag.strip()]


def category_search_text(full_ids: list[str]) -> str:
    """Every category id on the paths of an entry's categories ("1>100>5000"), wrapped in commas
    (",1,100,5000,"), so "in this category or below" is one substring test; "" without categories."""
    ids = {int(part) for path in full_ids for part in path.split(">") if part}
    return "," + ",".join(map(str, sorted(ids))) + "," if ids else ""


def archive_state_from_tags(tags: str) -> str:
    tag_set = set(split_tags(tags.lower()))
    if TAG_REPLACED in tag_set:
        return ArchiveState.PLACEHOLDER
    if TAG_ARCHIVED in tag_set:
        return ArchiveState.ARCHIVED
    return ArchiveState.INITIAL


class Category(models.Model):
    id = models.BigIntegerField(primary_key=True, help_text="Kaltura category id")
    parent_id = models.BigIntegerField(null=True, blank=True)
    # Text, not CharField: Kaltura sets no short limit on these, and PostgreSQL would refuse a longer
    # value mid-sync.
    name = models.TextField()
    full_name = models.TextField(help_text="names joined by >")
    full_ids = models.TextField(db_index=True, help_text="ids joined by >")
    depth = models.PositiveSmallIntegerField(default=0)
    entries_count = models.PositiveIntegerField(default=0)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["full_name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.full_name


class Entry(models.Model):
    id = models.CharField(primary_key=True, max_length=32, help_text="Kaltura entry id")
    # Text: Kaltura allows long names and user ids. The indexed ones are clipped by sync.mirror_text.
    name = models.TextField(blank=True)
    description = models.TextField(blank=True)
    owner_id = models.TextField(blank=True, db_index=True)
    creator_id = models.TextField(blank=True)
    # Kaltura's own tag string, and the same wrapped in commas (",a,b,") so an
    # exact tag test is a plain substring match in any database.
    tags = models.TextField(blank=True)
    tags_search = models.TextField(blank=True)
    categories = models.ManyToManyField(Category, blank=True, related_name="entries")
    # The ids on the paths of its categories, ",1,100,5000," (models.category_search_text), written by
    # the sync with each entry (sync.entry_row) and rewritten when categories move
    # (sync.store_category_search): the category filter tests it like tags_search instead of
    # matching tens of thousands of link rows against the entries.
    category_search = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()
    # No index of their own: entry_last_played_id, entry_plays_id and entry_state_id below start with these
    # columns and serve every lookup one would (migration 0016: each index an entry write keeps costs a sync).
    last_played_at = models.DateTimeField(null=True, blank=True)
    plays = models.PositiveIntegerField(default=0)
    views = models.PositiveIntegerField(default=0)
    status = models.SmallIntegerField(choices=EntryStatus.choices, db_index=True)
    media_type = models.SmallIntegerField(choices=MediaType.choices, null=True, blank=True)
    duration = models.PositiveIntegerField(default=0, help_text="seconds")
    source_type = models.CharField(max_length=32, blank=True)
    parent_entry_id = models.CharField(max_length=32, blank=True)
    capabilities = models.TextField(blank=True)
    replacing_entry_id = models.CharField(max_length=32, blank=True)
    thumbnail_url = models.URLField(max_length=1000, blank=True)
    original_flavor_id = models.CharField(max_length=32, blank=True)
    original_status = models.SmallIntegerField(choices=FlavorStatus.choices, null=True, blank=True)
    original_size_bytes = models.BigIntegerField(null=True, blank=True, db_index=True)
    total_flavor_bytes = models.BigIntegerField(default=0, db_index=True)
    archive_state = models.CharField(max_length=20, choices=ArchiveState.choices, default=ArchiveState.INITIAL)
    gone = models.BooleanField(default=False, help_text="no longer in Kaltura")
    synced_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name_plural = "entries"
        permissions = [
            ("browse_entries", "Browse and export the mirror of Kaltura entries"),
            ("run_batches", "Create and approve archive and replace batches"),
            ("restore_entries", "Restore archived videos"),
            ("manage_archive", "Manage archive settings and users"),
        ]
        indexes = [
            # The browse table sorts by (column, id); with id in the index, ties need no sort.
            models.Index(fields=["name", "id"], name="entry_name_id"),
            models.Index(fields=["plays", "id"], name="entry_plays_id"),
            models.Index(fields=["archive_state", "id"], name="entry_state_id"),
            # Every column the selection totals and the non-text filters read, in creation
            # order: totals can be read from this index alone, and the default newest-first
            # page tests the filters here before fetching just the fifty rows it shows.
            models.Index(
                fields=[
                    "created_at",
                    "last_played_at",
                    "gone",
                    "archive_state",
                    "total_flavor_bytes",
                    "plays",
                    "status",
                    "media_type",
                    "original_size_bytes",
                ],
                name="entry_browse",
            ),
            # The totals of an unfiltered selection (every sort of the whole mirror) from a small
            # index of the visible entries, instead of every row.
            models.Index(
                fields=["archive_state", "total_flavor_bytes"], condition=models.Q(gone=False), name="entry_totals"
            ),
            # The dashboard's bars by year of last play (and never played) read this range by range.
            models.Index(
                fields=["last_played_at", "total_flavor_bytes"], condition=models.Q(gone=False), name="entry_played"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.name}"

    def set_tags(self, tags: str) -> None:
        self.tags = tags
        self.tags_search = "," + ",".join(t.lower() for t in split_tags(tags)) + ","
        self.archive_state = archive_state_from_tags(tags)

    @property
    def tag_list(self) -> list[str]:
        return split_tags(self.tags)


class Flavor(models.Model):
    id = models.CharField(primary_key=True, max_length=32, help_text="Kaltura flavor asset id")
    entry = models.ForeignKey(Entry, on_delete=models.CASCADE, related_name="flavors")
    flavor_params_id = models.IntegerField(default=0)
    is_original = models.BooleanField(default=False)
    status = models.SmallIntegerField(choices=FlavorStatus.choices)
    # Bytes: Kaltura's exact sizeInBytes when it has one, else its KB figure * 1024.
    size_bytes = models.BigIntegerField(default=0)
    size_exact = models.BooleanField(default=False)
    tags = models.TextField(blank=True)
    file_ext = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    bitrate = models.PositiveIntegerField(default=0, help_text="kbit/s")
    created_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-is_original", "-size_bytes"]

    def __str__(self) -> str:
        return self.id


class SyncRun(models.Model):
    """One pass of mirroring Kaltura; its cursor lets a crashed pass resume where it stopped."""

    class Kind(models.TextChoices):
        FULL = "full", "full"
        INCREMENTAL = "incremental", "incremental"
        PLAYS = "plays", "plays refresh"

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Where to continue: e.g. {"created_at": 1700000000, "seen_ids": [...]} for a full pass.
    cursor = models.JSONField(default=dict, blank=True)
    # The updatedAt high-water mark an incremental pass starts from.
    since = models.DateTimeField(null=True, blank=True)
    total_expected = models.PositiveIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    gone = models.PositiveIntegerField(default=0)
    kaltura_requests = models.PositiveIntegerField(default=0)
    # What the pass cost beyond its pages: crowded seconds listed in parts and their requests, parts Kaltura
    # listed short, the count check against Kaltura and its walks, entries asked about by id, pacing.
    details = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.kind} sync {self.started_at:%Y-%m-%d %H:%M} {self.status}"

    @property
    def cost_summary(self) -> str:
        """What the pass cost beyond its pages, from `details`, in words ("" when nothing to say)."""
        d = self.details or {}
        parts = []
        if d.get("crowded_seconds"):
            parts.append(
                f"{d['crowded_seconds']} crowded second(s) listed in parts: {d.get('crowded_requests', 0)} requests"
            )
        missing = sum(part.get("missing", 0) for part in d.get("short", []))
        if missing:
            parts.append(f"{missing} entries Kaltura counted but did not list")
        if d.get("reconcile_walks"):
            parts.append(f"counts checked against Kaltura: {d['reconcile_walks']} range(s) walked again")
        if d.get("difference"):
            parts.append(f"Kaltura's count and the mirror's still differ by {d['difference']}")
        if d.get("gone_asked"):
            still = d.get("gone_still_in_kaltura", 0)
            parts.append(f"{d['gone_asked']} unseen entries asked about by id, {still} still in Kaltura")
        if d.get("paced_seconds") or d.get("blocked"):
            parts.append(f"calls paced {d.get('paced_seconds', 0)} s, {d.get('blocked', 0)} blocked by Kaltura")
        return "; ".join(parts)

    @property
    def progress_percent(self) -> int | None:
        if not self.total_expected:
            return None
        return min(100, round(100 * self.seen / self.total_expected))


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("audit events are append-only")

    def delete(self):
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """One action, real or dry run, by a person or by the system. Never changed once written, but for
    one thing: its IP addresses are blanked once older than the retention period (blank_addresses)."""

    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        SKIPPED = "skipped", "skipped"
        FAILED = "failed", "failed"
        REFUSED = "refused", "refused"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as text too, so the record survives the user's deletion.
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=50, db_index=True)
    entry_id = models.CharField(max_length=32, blank=True, db_index=True)
    batch = models.ForeignKey("Batch", null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    dry_run = models.BooleanField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, db_index=True)
    message = models.CharField(max_length=1000, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The audit log's "what did this person do", newest first.
            models.Index(fields=["username", "-created_at", "-id"], name="auditevent_user_created"),
            # The unfiltered log, newest first, in the page's exact order (no sort of ties).
            models.Index(fields=["-created_at", "-id"], name="auditevent_newest"),
        ]

    def __str__(self) -> str:
        mode = "dry run" if self.dry_run else "real"
        when = f"{self.created_at:%Y-%m-%d %H:%M}" if self.created_at else "unsaved"
        return f"{when} {self.username} {self.action} {self.entry_id} ({mode}): {self.outcome}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("audit events are append-only")

    def blank_addresses(self) -> bool:
        """Remove the IP addresses from the message and details, and nothing else; True if there were any.

        The only change ever made to a stored event, by audit.blank_old_addresses (itself audited).
        """

        message, details = without_ips(self.message), without_ips(self.details)
        if (message, details) == (self.message, self.details):
            return False
        # Past AppendOnlyQuerySet.update on purpose: this is the one write it lets through.
        models.QuerySet.update(AuditEvent.objects.filter(pk=self.pk), message=message, details=details)
        self.message, self.details = message, details
        return True


class ArchiveCopy(models.Model):
    """One verified copy in S3 of one exact content of an entry's original: what makes replacing it safe.

    The content is named by Kaltura's flavor id, its `version` and its byte count; the copy by bucket, key and
    VersionId. An owner who replaces the media makes new content: its copy is a second record (and a second S3
    object), the first one stays. Once the placeholder is in, the placeholder's own identity is recorded too,
    so a restore writes only over that placeholder.
    """

    class HashSource(models.TextChoices):
        STREAM = "stream", "computed while copying"
        S3_TAG = "s3_tag", "our tag on an object found in S3"
        S3_READ = "s3_read", "adopted: hash computed from S3"
        NONE = "none", "no hash (the old tool's copy)"

    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="archive_copies")
    flavor_id = models.CharField(max_length=32, help_text="the original flavor that was copied")
    flavor_version = models.CharField(max_length=32, blank=True, help_text="its Kaltura version when copied")
    bucket = models.CharField(max_length=255)
    key = models.CharField(max_length=1024)
    version_id = models.CharField(max_length=1024, blank=True)
    storage_class = models.CharField(max_length=32)
    size_bytes = models.BigIntegerField()
    # Computed on the stream while copying; empty for a copy adopted without one (the old tool's).
    sha256 = models.CharField(max_length=64, blank=True)
    sha256_source = models.CharField(max_length=10, choices=HashSource.choices, default=HashSource.STREAM)
    crc32 = models.CharField(max_length=16, blank=True, help_text="S3's full-object CRC32 (base64)")
    adopted = models.BooleanField(default=False, help_text="found in S3 rather than copied by us")
    verified_at = models.DateTimeField()
    replaced_at = models.DateTimeField(null=True, blank=True, help_text="when the placeholder went in")
    bytes_freed = models.BigIntegerField(default=0)
    # The placeholder as Kaltura holds it once swapped in: the only content a restore may write over.
    placeholder_flavor_id = models.CharField(max_length=32, blank=True)
    placeholder_version = models.CharField(max_length=32, blank=True)
    placeholder_size = models.BigIntegerField(null=True, blank=True)
    # Fixity (issue 15): the last audit of the S3 version's size, class and checksum (no restore), and the last
    # full re-hash of a restored sample against `sha256`. Every check is also an audit event: these are the latest.
    fixity_checked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    fixity_ok = models.BooleanField(null=True, blank=True, help_text="None until first audited")
    fixity_problem = models.TextField(blank=True)
    rehash_requested_at = models.DateTimeField(null=True, blank=True, help_text="sampled: restore asked for")
    rehashed_at = models.DateTimeField(null=True, blank=True)
    rehash_ok = models.BooleanField(null=True, blank=True)
    rehash_problem = models.TextField(blank=True)
    # The self-describing sidecar beside the copy (archive/sidecar.py): the entry's metadata at archive time.
    sidecar_key = models.CharField(max_length=1024, blank=True)
    sidecar_version_id = models.CharField(max_length=1024, blank=True)

    class Meta:
        verbose_name_plural = "archive copies"
        # Newest first: `.first()` is the copy of the entry's latest content.
        ordering = ["-verified_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["bucket", "key", "version_id"], name="one_record_per_s3_object"),
        ]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class EntryLock(models.Model):
    """The one operation (a batch item or a restore) allowed on an entry, from its claim until it ends.

    The unique entry_id is the rule, enforced by the database: a second operation's claim fails on it.
    """

    entry_id = models.CharField(max_length=32, unique=True)
    holder = models.CharField(max_length=40, help_text='"item:<id>" or "restore:<id>"')
    acquired_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.entry_id} held by {self.holder}"


class LegalHold(models.Model):
    """An archive admin's legal hold on an entry: nothing replaces, restores or re-archives over it until released.

    One row while held; placing and releasing are audit events (the history). Its copies' S3 versions get an
    Object Lock legal hold too where the bucket has Object Lock.
    """

    entry_id = models.CharField(max_length=32, unique=True)
    reason = models.CharField(max_length=500)
    placed_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="+")
    placed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.entry_id} held: {self.reason}"

    @property
    def refusal(self) -> str:
        """The plain reason every plan gives for refusing a held entry."""
        return (
            f"under legal hold since {self.placed_at:%Y-%m-%d} ({self.reason}, placed by "
            f"{self.placed_by.get_username()}): nothing is archived, replaced or restored until an archive admin "
            "releases the hold"
        )


class Batch(models.Model):
    """A librarian's selection of entries and what to do to them, approved before it runs."""

    class Action(models.TextChoices):
        ARCHIVE = "archive", "archive to S3"
        REPLACE = "replace", "replace with placeholder"
        ARCHIVE_REPLACE = "archive_replace", "archive and replace"

    class Status(models.TextChoices):
        DRAFT = "draft", "awaiting approval"
        APPROVED = "approved", "approved"
        RUNNING = "running", "running"
        DONE = "done", "done"
        CANCELLED = "cancelled", "cancelled"

    action = models.CharField(max_length=20, choices=Action.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    filter_query = models.TextField(blank=True, help_text="the browse filter the selection came from")
    approved_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)
    second_approved_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.pk}: {self.get_action_display()}"


class BatchItem(models.Model):
    """One entry of a batch. Its status is also the entry's claim while work is under way."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        WAITING = "waiting", "waiting for Kaltura"
        DONE = "done", "done"
        SKIPPED = "skipped", "skipped"
        FAILED = "failed", "failed"
        ERRORED = "errored", "error (see the log)"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE = (Status.RUNNING, Status.WAITING)
    RETRYABLE = (Status.FAILED, Status.ERRORED)
    FINISHED = (Status.DONE, Status.SKIPPED, *RETRYABLE, Status.CANCELLED)

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    entry_id = models.CharField(max_length=32)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    planned_steps = models.JSONField(default=list, blank=True)
    skip_reason = models.CharField(max_length=255, blank=True)
    message = models.TextField(blank=True)
    bytes_to_copy = models.BigIntegerField(default=0)
    bytes_copied = models.BigIntegerField(default=0)
    bytes_freed = models.BigIntegerField(default=0)
    # What has been done so far, so a rerun after a crash knows, e.g. that the replacement was started.
    progress = models.JSONField(default=dict, blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "entry_id"], name="one_item_per_entry_per_batch"),
            # The claim: two batches (or two jobs) can never work on one entry at the same time.
            models.UniqueConstraint(
                fields=["entry_id"],
                condition=models.Q(status__in=["running", "waiting"]),
                name="one_active_item_per_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entry_id} in batch {self.batch_id}: {self.status}"


# --- Policies, owner notices, exemptions (issue 7) ----------------------------------------


class ArchivePolicy(models.Model):
    """A saved browse filter that makes a batch for approval on a schedule; it never acts by itself."""

    class Schedule(models.TextChoices):
        WEEKLY = "weekly", "weekly"
        MONTHLY = "monthly", "monthly"
        QUARTERLY = "quarterly", "every three months"
        YEARLY = "yearly", "yearly"

    ACTIONS = [
        (Batch.Action.ARCHIVE, Batch.Action.ARCHIVE.label),
        (Batch.Action.ARCHIVE_REPLACE, Batch.Action.ARCHIVE_REPLACE.label),
    ]

    name = models.CharField(max_length=200, unique=True)
    filter_query = models.TextField(help_text="the browse filter, as its normalised query string")
    action = models.CharField(max_length=20, choices=ACTIONS, default=Batch.Action.ARCHIVE)
    schedule = models.CharField(max_length=20, choices=Schedule.choices, default=Schedule.MONTHLY)
    notice_days = models.PositiveSmallIntegerField(
        default=14, help_text="days owners have to keep entries after approval; 0: no notice"
    )
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(help_text="when the scheduler next makes a batch from it")
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "archive policies"

    def __str__(self) -> str:
        return self.name


class BatchNotice(models.Model):
    """A batch that warns owners first: approved, it waits until `runs_after` before it is queued."""

    batch = models.OneToOneField(Batch, on_delete=models.CASCADE, primary_key=True, related_name="notice")
    policy = models.ForeignKey(ArchivePolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="batches")
    notice_days = models.PositiveSmallIntegerField()
    # Set when the notices go out (so owners always get the full period), then fixed.
    runs_after = models.DateTimeField(null=True, blank=True)
    notices_sent_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True, help_text="when the batch was queued to run")

    def __str__(self) -> str:
        return f"notice for batch {self.batch_id}"


class OwnerNotice(models.Model):
    """The one e-mail an owner gets about one batch, and what became of it."""

    class Status(models.TextChoices):
        PENDING = "pending", "not sent yet"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        MISSING = "missing", "no e-mail address"
        REFUSED = "refused", "address refused (bounced)"
        UNCONFIRMED = "unconfirmed", "sending was interrupted; may not have arrived"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="owner_notices")
    owner_id = models.CharField(max_length=255, blank=True)
    email = models.CharField(max_length=320, blank=True)
    entry_ids = models.JSONField(default=list)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=1000, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The keep link works once: set when the owner kept entries with it.
    keep_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["owner_id"]
        constraints = [models.UniqueConstraint(fields=["batch", "owner_id"], name="one_notice_per_owner_per_batch")]

    def __str__(self) -> str:
        return f"notice to {self.owner_id or '(no owner)'} for batch {self.batch_id}: {self.status}"


class ExcludedCategory(models.Model):
    """A category whose entries (and its sub-categories' entries) are never archived."""

    category_id = models.BigIntegerField(unique=True, help_text="Kaltura category id")
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["category_id"]
        verbose_name_plural = "excluded categories"

    def __str__(self) -> str:
        return f"excluded category {self.category_id}"


class Restore(models.Model):
    """Bringing one entry's original back from S3 in place of the placeholder.

    requested → waiting (on a Glacier/Deep Archive restore) → uploading (S3 to Kaltura, hashed on the way)
    → converting (Kaltura makes the flavors again) → done; or failed / cancelled. The status is also the
    entry's claim: at most one active restore per entry, so a second request while one is under way
    finds the first instead of adding another.
    """

    class Source(models.TextChoices):
        MANUAL = "manual", "requested by an admin"
        AUTO_PLAYED = "auto_played", "placeholder was played"
        AUTO_PROTECTED = "auto_protected", "replaced within the protected age"

    class Tier(models.TextChoices):
        EXPEDITED = "Expedited", "Expedited"
        STANDARD = "Standard", "Standard"
        BULK = "Bulk", "Bulk"

    class Status(models.TextChoices):
        REQUESTED = "requested", "requested"
        WAITING = "waiting", "waiting on Glacier"
        UPLOADING = "uploading", "uploading to Kaltura"
        CONVERTING = "converting", "Kaltura is converting"
        DONE = "done", "restored"
        FAILED = "failed", "failed"
        ERRORED = "errored", "error (see the log)"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE = (Status.REQUESTED, Status.WAITING, Status.UPLOADING, Status.CONVERTING)
    RETRYABLE = (Status.FAILED, Status.ERRORED, Status.CANCELLED)

    entry_id = models.CharField(max_length=32, db_index=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    # Null when the system asked (automatic restores); audit events then name the system user.
    requested_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.STANDARD)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUESTED, db_index=True)
    storage_class = models.CharField(max_length=32, blank=True, help_text="the S3 object's class when last read")
    size_bytes = models.BigIntegerField(default=0)
    bytes_uploaded = models.BigIntegerField(default=0)
    requested_at = models.DateTimeField(auto_now_add=True)
    s3_requested_at = models.DateTimeField(null=True, blank=True)
    expected_ready_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # What is done so far (upload token, replacement started...), so a rerun after a crash continues.
    progress = models.JSONField(default=dict, blank=True)
    job_id = models.CharField(max_length=64, blank=True, help_text="the claim token of the job allowed to work")
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # An old-tool placeholder (never recorded by us) whose size is not a known placeholder's: an archive admin
    # looked at the entry and confirmed it shows a placeholder.
    placeholder_confirmed_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entry_id"],
                condition=models.Q(status__in=["requested", "waiting", "uploading", "converting"]),
                name="one_active_restore_per_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"restore of {self.entry_id}: {self.status}"

    @property
    def active(self) -> bool:
        return self.status in self.ACTIVE
