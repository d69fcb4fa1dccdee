"""The preservation report (issue 15): what an auditor signs. Per storage class, the copies, their bytes, the
fixity audit (last check, passed, failed, never checked) and the sample re-hash coverage; then, per criterion of
the NDSA Levels of Digital Preservation (v2.0), the level this archive reaches and what is missing for the next.

Everything is read from our own records (copies, fixity results, the audit log) and, for the bucket, from
`bucket_safety` when it can be read: the report claims nothing it cannot show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q, Sum

from archive_app.archive.fixity import rehash_period
from archive_app.models import ArchiveCopy


@dataclass
class ClassRow:
    storage_class: str
    copies: int
    bytes: int
    with_sha256: int
    audited: int
    passed: int
    failed: int
    oldest_check: datetime | None
    newest_check: datetime | None
    rehashed_in_period: int  # read in full (re-hash, or the archive-time stream) within the class's period
    rehash_failed: int
    period_years: int

    @property
    def never_audited(self) -> int:
        return self.copies - self.audited

    @property
    def rehash_coverage(self) -> float:
        return self.rehashed_in_period / self.copies if self.copies else 1.0


@dataclass
class Criterion:
    area: str
    level: int  # 0..4
    evidence: str
    missing: str  # for the next level; "" at level 4


@dataclass
class Report:
    generated_at: datetime
    rows: list[ClassRow]
    criteria: list[Criterion] = field(default_factory=list)
    bucket: object | None = None  # storage.BucketSafety, when it could be read
    bucket_error: str = ""


def class_rows(now: datetime) -> list[ClassRow]:
    rows = []
    stats = (
        ArchiveCopy.objects.values("storage_class")
        .annotate(
            copies=Count("id"),
            bytes=Sum("size_bytes"),
            with_sha256=Count("id", filter=~Q(sha256="")),
            audited=Count("id", filter=Q(fixity_checked_at__isnull=False)),
            passed=Count("id", filter=Q(fixity_ok=True)),
            failed=Count("id", filter=Q(fixity_ok=False)),
            oldest=Min("fixity_checked_at"),
            newest=Max("fixity_checked_at"),
            rehash_failed=Count("id", filter=Q(rehash_ok=False)),
        )
        .order_by("storage_class")
    )
    for stat in stats:
        period = rehash_period(stat["storage_class"])
        since = now - period
        in_period = (
            ArchiveCopy.objects.filter(storage_class=stat["storage_class"])
            .exclude(sha256="")
            .filter(Q(rehashed_at__gte=since, rehash_ok=True) | Q(verified_at__gte=since))
            .count()
        )
        rows.append(
            ClassRow(
                storage_class=stat["storage_class"],
                copies=stat["copies"],
                bytes=stat["bytes"] or 0,
                with_sha256=stat["with_sha256"],
                audited=stat["audited"],
                passed=stat["passed"],
                failed=stat["failed"],
                oldest_check=stat["oldest"],
                newest_check=stat["newest"],
                rehashed_in_period=in_period,
                rehash_failed=stat["rehash_failed"],
                period_years=round(period.days / 365),
            )
        )
    return rows


def ndsa_criteria(rows: list[ClassRow], bucket, now: datetime) -> list[Criterion]:
    """The level per NDSA functional area, each level's conditions checked in order; the first unmet one is what
    is missing. Storage, Integrity (fixity), Control (information security) and Metadata."""
    copies = sum(row.copies for row in rows)
    criteria = []

    # Storage: S3 keeps one logical copy per object (redundant across zones, but one bucket, one account).
    replaced = ArchiveCopy.objects.filter(replaced_at__isnull=False).count()
    storage_missing = (
        "a second complete copy in a separate location: after a replacement S3 holds the only copy (configure S3 "
        "Cross-Region Replication of the bucket, or a copy with another provider)"
    )
    if copies and not replaced:
        criteria.append(
            Criterion(
                "Storage",
                1,
                "every archived original is still in Kaltura and in S3 (two copies)",
                "a third copy, one in a different geographic location",
            )
        )
    else:
        criteria.append(Criterion("Storage", 0, f"{replaced} of {copies} originals exist only in S3", storage_missing))

    # Integrity.
    with_hash = sum(row.with_sha256 for row in rows)
    audited_recently = ArchiveCopy.objects.filter(
        fixity_checked_at__gte=now - timedelta(hours=2 * settings.FIXITY_AUDIT_INTERVAL_HOURS)
    ).count()
    failed = sum(row.failed + row.rehash_failed for row in rows)
    covered = sum(row.rehashed_in_period for row in rows)
    one_person = bool(bucket) and (
        bucket.can_delete_versions == "no" or bucket.default_retention.startswith("COMPLIANCE")
    )
    if not copies or with_hash < copies:
        level, missing = 0, f"a SHA-256 for every copy ({copies - with_hash} have none: the old tool's archives)"
    elif audited_recently < copies:
        level, missing = (
            2,
            (
                f"every copy checked at a fixed interval: {copies - audited_recently} copies not "
                f"audited in the last {2 * settings.FIXITY_AUDIT_INTERVAL_HOURS} hours (run audit_fixity)"
            ),
        )
    elif covered < copies or failed:
        level, missing = (
            3,
            (
                f"every copy re-hashed in full within its period ({copies - covered} not yet: raise "
                "FIXITY_REHASH_BYTES_PER_MONTH) and no failed check"
                + (f" ({failed} failed)" if failed else "")
                + "; the ability to repair a corrupted copy from a second one"
            ),
        )
    else:
        level, missing = 3, "the ability to repair a corrupted copy from a second copy (there is one copy)"
    evidence = (
        f"SHA-256 on the stream at ingest for {with_hash} of {copies} copies; {audited_recently} audited "
        f"recently (one HEAD each, audit events kept); {covered} re-hashed within their period"
    )
    if level == 3 and not one_person:
        missing += "; no single credential able to delete every copy (Object Lock COMPLIANCE, or deny deletes)"
    criteria.append(Criterion("Integrity (fixity)", level, evidence, missing))

    # Control: roles, and the append-only audit log of every action.
    criteria.append(
        Criterion(
            "Control (information security)",
            3,
            "two roles (librarians, archive admins) decide who may archive, replace and restore; "
            "an append-only audit log names who did what, real or dry run",
            "a periodic, recorded review of the audit log and of who holds the S3 credentials",
        )
    )

    # Metadata: the inventory is ours; the sidecar beside each copy says what the content is (NDSA level 2).
    with_sidecar = ArchiveCopy.objects.exclude(sidecar_key="").count()
    inventory = "an inventory of every copy: bucket, key, version, class, size, SHA-256, CRC32 (this report, the CSV)"
    if copies and with_sidecar == copies:
        criteria.append(
            Criterion(
                "Metadata",
                2,
                f"{inventory}; beside every copy a sidecar with the entry's metadata, captions and thumbnail",
                "a metadata standard chosen for the sidecar (e.g. a PREMIS or Dublin Core mapping), "
                "and a backup of the inventory kept apart from both the database and the bucket",
            )
        )
    else:
        criteria.append(
            Criterion(
                "Metadata",
                1 if copies else 0,
                inventory,
                f"the entry's metadata stored with each copy ({copies - with_sidecar} of {copies} copies "
                "have no sidecar: copied before sidecars were written), "
                "and a backup of the inventory kept apart from the database",
            )
        )
    return criteria


def preservation_report(*, now: datetime | None = None, read_bucket: bool = True) -> Report:
    now = now or datetime.now(UTC)
    rows = class_rows(now)
    report = Report(generated_at=now, rows=rows)
    if read_bucket:
        from django.core.exceptions import ImproperlyConfigured

        from archive_app.lib.storage import ArchiveStore, StorageError

        try:
            report.bucket = ArchiveStore.from_settings().bucket_safety()
        except (StorageError, ImproperlyConfigured) as exc:
            report.bucket_error = str(exc)
    report.criteria = ndsa_criteria(rows, report.bucket, now)
    return report


CSV_HEADER = [
    "storage_class",
    "copies",
    "bytes",
    "with_sha256",
    "audited",
    "never_audited",
    "passed",
    "failed",
    "oldest_check",
    "newest_check",
    "rehashed_in_period",
    "rehash_coverage",
    "rehash_failed",
    "rehash_period_years",
]


def csv_rows(report: Report):
    """The rows after CSV_HEADER: the classes, then the NDSA criteria, then when it was made."""
    for row in report.rows:
        yield [
            row.storage_class,
            row.copies,
            row.bytes,
            row.with_sha256,
            row.audited,
            row.never_audited,
            row.passed,
            row.failed,
            row.oldest_check.isoformat() if row.oldest_check else "",
            row.newest_check.isoformat() if row.newest_check else "",
            row.rehashed_in_period,
            f"{row.rehash_coverage:.4f}",
            row.rehash_failed,
            row.period_years,
        ]
    yield []
    yield ["ndsa_area", "level", "evidence", "missing_for_next_level"]
    for criterion in report.criteria:
        yield [criterion.area, criterion.level, criterion.evidence, criterion.missing]
    yield []
    yield ["generated_at", report.generated_at.isoformat()]
