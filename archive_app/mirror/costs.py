"""What archiving saves: Kaltura storage freed, minus S3 storage paid for the originals.

Prices come from settings (PRICE_*), per GB-month, where a GB is 2**30 bytes as AWS
bills it. The figures are estimates for deciding, not an invoice: request and retrieval
fees are left out (they are one-off and small next to storage for videos), and so is the
128 KB minimum billable object size of STANDARD_IA and GLACIER_IR (video originals are
far larger).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

GB = 1024**3
KB = 1024
DAYS_PER_MONTH = 365 / 12
# Deleting (or overwriting) an object earlier is still charged for this long (AWS S3 user guide).
MIN_STORAGE_DAYS = {"STANDARD": 0, "STANDARD_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}
# For each object in Glacier Flexible Retrieval or Deep Archive, AWS also bills 8 KB of
# index at the STANDARD rate and 32 KB of metadata at the class's own rate.
OVERHEAD_CLASSES = {"GLACIER", "DEEP_ARCHIVE"}
OVERHEAD_STANDARD_BYTES = 8 * KB
OVERHEAD_CLASS_BYTES = 32 * KB
# After a replace Kaltura transcodes the placeholder video into the entry's flavors. A
# still picture compresses to about the source's size at each rendition; six flavors is
# a generous transcoding profile, so this errs towards freeing less.
PLACEHOLDER_FLAVORS = 6
PLACEHOLDER_FALLBACK_BYTES = 50_000


@dataclass(frozen=True)
class Savings:
    storage_class: str
    freed_bytes: int  # storage Kaltura no longer holds
    archived_bytes: int  # originals kept in S3
    objects: int
    kaltura_monthly: float  # USD no longer paid to Kaltura per month
    s3_monthly: float  # USD paid to S3 per month
    min_storage_days: int

    @property
    def net_monthly(self) -> float:
        return self.kaltura_monthly - self.s3_monthly

    @property
    def net_yearly(self) -> float:
        return 12 * self.net_monthly

    @property
    def minimum_charge(self) -> float:
        """What S3 charges even if every copy were deleted right after archiving."""
        return self.s3_monthly * self.min_storage_days / DAYS_PER_MONTH

    @property
    def first_year_net(self) -> float:
        """Twelve months of savings against S3 charged for the longer of a year and the minimum duration."""
        months = max(12, self.min_storage_days / DAYS_PER_MONTH)
        return 12 * self.kaltura_monthly - months * self.s3_monthly


def s3_price(storage_class: str) -> float:
    return settings.PRICE_S3_GB_MONTH[storage_class]


def s3_monthly_cost(*, archived_bytes: int, objects: int, storage_class: str) -> float:
    cost = archived_bytes / GB * s3_price(storage_class)
    if storage_class in OVERHEAD_CLASSES:
        cost += objects * OVERHEAD_STANDARD_BYTES / GB * s3_price("STANDARD")
        cost += objects * OVERHEAD_CLASS_BYTES / GB * s3_price(storage_class)
    return cost


def placeholder_entry_bytes() -> int:
    """Estimated Kaltura storage an entry still takes once its flavors are the placeholder's."""
    try:
        size = settings.PLACEHOLDER_VIDEO.stat().st_size
    except OSError:
        size = PLACEHOLDER_FALLBACK_BYTES
    return size * PLACEHOLDER_FLAVORS


def kaltura_bytes_freed(*, flavor_bytes: int, entries: int) -> int:
    """Flavors of entries not yet replaced, minus what their placeholders will take."""
    return max(0, flavor_bytes - entries * placeholder_entry_bytes())


def savings(*, freed_bytes: int, archived_bytes: int, objects: int, storage_class: str | None = None) -> Savings:
    storage_class = storage_class or settings.ARCHIVE_STORAGE_CLASS
    return Savings(
        storage_class=storage_class,
        freed_bytes=freed_bytes,
        archived_bytes=archived_bytes,
        objects=objects,
        kaltura_monthly=freed_bytes / GB * settings.PRICE_KALTURA_STORAGE_GB_MONTH,
        s3_monthly=s3_monthly_cost(archived_bytes=archived_bytes, objects=objects, storage_class=storage_class),
        min_storage_days=MIN_STORAGE_DAYS[storage_class],
    )


def retrieval_cost(*, size_bytes: int, storage_class: str, tier: str = "Standard") -> float:
    """USD to read `size_bytes` back from `storage_class` (a Glacier restore at `tier`; Deep Archive has no
    Expedited, so it is priced as Standard), plus the restored copy's STANDARD storage for the day it is kept."""
    prices = settings.PRICE_RETRIEVAL_GB
    if storage_class == "DEEP_ARCHIVE" and tier == "Expedited":
        tier = "Standard"
    price = prices.get(f"{storage_class}:{tier}", prices.get(storage_class, 0.0))
    restored_copy = size_bytes / GB * s3_price("STANDARD") / DAYS_PER_MONTH if storage_class in OVERHEAD_CLASSES else 0
    return size_bytes / GB * price + restored_copy
