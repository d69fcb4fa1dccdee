"""Reads of the mirror for the pages and the commands (writes live in sync.py and later workflow.py).

The mirror is what Kaltura looked like at the last sync: good for choosing and
counting, never proof of the live state.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import connections
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from archive_app.mirror import costs
from archive_app.mirror.filters import EntryFilterSet, unplayed_since, years_ago
from archive_app.models import ArchiveState, Entry, EntryStatus, MediaType, SyncRun

NOT_REPLACED = ~Q(archive_state=ArchiveState.PLACEHOLDER)


class InvalidSelection(Exception):
    """Filter values that do not describe a selection; `errors` maps field name to messages."""

    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = {field: list(messages) for field, messages in errors.items()}
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in self.errors.items()))


# --- Selections -------------------------------------------------------------------


def entry_filterset(*, data: Mapping, now: dt.datetime | None = None) -> EntryFilterSet:
    """A bound FilterSet over all entries; callers check `is_valid()` before using `.qs`."""
    return EntryFilterSet(data=data, queryset=Entry.objects.all(), now=now)


def entry_list(*, data: Mapping, now: dt.datetime | None = None) -> QuerySet[Entry]:
    """The entries `data` selects, sorted; raises InvalidSelection for bad values.

    An invalid FilterSet would otherwise filter by its valid fields only: a wider
    selection than asked for, which must never reach an archive batch.
    """
    filterset = entry_filterset(data=data, now=now)
    if not filterset.is_valid():
        raise InvalidSelection({field: errors for field, errors in filterset.errors.items()})
    return filterset.qs


@dataclass(frozen=True)
class SelectionTotals:
    entries: int
    bytes: int  # all flavors
    placeholder_entries: int  # already replaced: archiving frees nothing more there
    placeholder_bytes: int
    estimated: bool = False  # from a sample of the table (entry_selection_totals): the page says "about"

    @property
    def unreplaced_entries(self) -> int:
        return self.entries - self.placeholder_entries

    @property
    def freed_bytes(self) -> int:
        return costs.kaltura_bytes_freed(
            flavor_bytes=self.bytes - self.placeholder_bytes, entries=self.unreplaced_entries
        )


# On PostgreSQL the browse page's totals of a large selection are estimated: summing it exactly reads every
# row it holds, scattered over the table (150-300 ms for 20,000-600,000 of 1,000,000 entries on this
# 2-core machine, most of the page's time budget), and to choose entries the second significant digit is
# enough. A sample of about SAMPLE_ROWS rows (random pages of the table) is summed first; when it puts
# the selection at ESTIMATE_ABOVE entries or more, its totals are scaled up, rounded to ESTIMATE_DIGITS
# significant digits and shown as "about" (1-5 % off in bench/bench_browse.py's cases); otherwise the
# selection is summed exactly. Tables under ESTIMATE_FROM_TABLE rows are always summed exactly.
ESTIMATE_ABOVE = 10_000
ESTIMATE_FROM_TABLE = 200_000
SAMPLE_ROWS = 30_000
ESTIMATE_DIGITS = 2


def entry_selection_totals(*, queryset: QuerySet[Entry], estimate: bool = False) -> SelectionTotals:
    """Counts and sizes of a selection in one aggregate query.

    Only columns of the browse index are read (COUNT(*), not COUNT(id)), so a database can
    answer from that index without visiting the rows. With `estimate` (the browse page), a large
    selection on a large PostgreSQL table gets totals estimated from a sample (see ESTIMATE_ABOVE);
    everything that acts on a selection (batches, policies, the selection's own count) counts exactly.
    """
    if estimate:
        estimated = _estimated_totals(queryset)
        if estimated is not None:
            return estimated
    placeholder = Q(archive_state=ArchiveState.PLACEHOLDER)
    row = queryset.aggregate(
        entries=Count("*"),
        bytes=Sum("total_flavor_bytes"),
        placeholder_entries=Count("archive_state", filter=placeholder),
        placeholder_bytes=Sum("total_flavor_bytes", filter=placeholder),
    )
    return SelectionTotals(
        entries=row["entries"] or 0,
        bytes=row["bytes"] or 0,
        placeholder_entries=row["placeholder_entries"] or 0,
        placeholder_bytes=row["placeholder_bytes"] or 0,
    )


def _estimated_totals(queryset: QuerySet[Entry]) -> SelectionTotals | None:
    """The selection's totals from a block sample of the table (TABLESAMPLE SYSTEM, the same pages on every
    request: REPEATABLE), scaled up; None when the table is small, the database not PostgreSQL, or the
    sample puts the selection below ESTIMATE_ABOVE (then only an exact sum will do).

    The scale is the table's rows over the sample's (a ratio estimate: the number of pages drawn varies
    by a few per cent, and so would totals scaled by the sampling rate alone); the table's rows are
    PostgreSQL's own estimate, its statistics' rows per page times the table's pages now, as its
    planner reckons them.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(Entry._meta.db_table)
    inner, params = queryset.order_by().values("archive_state", "total_flavor_bytes").query.sql_with_params()
    # Only the main FROM names the table bare (the filters are column tests).
    main_from = re.compile(rf" FROM {re.escape(table)}(?= |$)")
    if len(main_from.findall(inner)) != 1:
        return None  # a selection that reads the table twice: no sample of it
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples / NULLIF(relpages, 0) * pg_relation_size(oid) / current_setting('block_size')::int "
            "FROM pg_class WHERE oid = %s::regclass",
            [Entry._meta.db_table],
        )
        row = cursor.fetchone()
        rows = row[0] if row and row[0] else 0
        if rows < ESTIMATE_FROM_TABLE:  # also never analysed
            return None
        # A number computed here, not user input.
        sample = f" FROM {table} TABLESAMPLE SYSTEM ({min(100.0, 100 * SAMPLE_ROWS / rows):.6f}) REPEATABLE (0)"
        placeholder = connection.ops.quote_name("archive_state") + " = %s"
        cursor.execute(
            f"SELECT (SELECT COUNT(*) {sample}), COUNT(*), SUM(total_flavor_bytes), "
            f"COUNT(*) FILTER (WHERE {placeholder}), SUM(total_flavor_bytes) FILTER (WHERE {placeholder}) "
            f"FROM ({main_from.sub(lambda _: sample, inner, count=1)}) AS sample",
            [ArchiveState.PLACEHOLDER, ArchiveState.PLACEHOLDER, *params],
        )
        sampled, *counted = [float(value or 0) for value in cursor.fetchone()]  # SUM(bigint) is a Decimal
    if not sampled:
        return None
    scale = rows / sampled
    if counted[0] * scale < ESTIMATE_ABOVE:
        return None
    entries, total_bytes, placeholders, placeholder_bytes = (_significant(value * scale) for value in counted)
    return SelectionTotals(entries, total_bytes, placeholders, placeholder_bytes, estimated=True)


def _significant(value: float, digits: int = ESTIMATE_DIGITS) -> int:
    """`value` rounded to `digits` significant digits: 523,417.2 -> 523,000."""
    if value < 1:
        return 0
    shift = max(0, len(str(int(value))) - digits)
    return int(round(value, -shift))


def entry_category_ids(*, entry_ids: list[str]) -> dict[str, list[int]]:
    """Entry id -> its category ids, for a page of entries, in one query."""
    links: dict[str, list[int]] = {}
    rows = Entry.categories.through.objects.filter(entry_id__in=entry_ids).values_list("entry_id", "category_id")
    for entry_id, category_id in rows:
        links.setdefault(entry_id, []).append(category_id)
    return links


def entry_detail(*, entry_id: str) -> Entry:
    """One entry with its flavors and categories; raises Entry.DoesNotExist."""
    if not entry_id or len(entry_id) > Entry._meta.pk.max_length or "\x00" in entry_id:
        raise Entry.DoesNotExist  # never an id; PostgreSQL would refuse a NUL in the query
    return Entry.objects.prefetch_related("flavors", "categories").get(pk=entry_id)


# --- Export (the web download and `list_entries` write the same rows) --------------

EXPORT_COLUMNS = [
    # The old tool's `list` columns first, in its order.
    "last_played",
    "plays",
    "id",
    "status",
    "tags",
    "created",
    "creator",
    "categories",
    "name",
    "owner",
    "media_type",
    "duration",
    "original_size_bytes",
    "total_flavor_bytes",
    "archive_state",
    "category_ids",
]
EXPORT_CHUNK_SIZE = 2000
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _iso(moment: dt.datetime | None) -> str:
    return moment.isoformat() if moment else ""


def entry_export_rows(*, queryset: QuerySet[Entry]) -> Iterator[list]:
    """One list per entry, in EXPORT_COLUMNS order; streams in chunks, never the whole selection."""
    status_names = {status.value: status.name for status in EntryStatus}
    media_names = {media.value: media.name for media in MediaType}
    entries = queryset.prefetch_related("categories").iterator(chunk_size=EXPORT_CHUNK_SIZE)
    for entry in entries:
        categories = sorted(entry.categories.all(), key=lambda category: category.full_name)
        yield [
            _iso(entry.last_played_at),
            entry.plays,
            entry.id,
            status_names.get(entry.status, entry.status),
            entry.tags,
            _iso(entry.created_at),
            entry.creator_id,
            ",".join(category.full_name for category in categories),
            entry.name,
            entry.owner_id,
            media_names.get(entry.media_type, entry.media_type or ""),
            entry.duration,
            "" if entry.original_size_bytes is None else entry.original_size_bytes,
            entry.total_flavor_bytes,
            entry.archive_state,
            ",".join(str(category.id) for category in categories),
        ]


def safe_cell(value) -> str | int:
    """Text a spreadsheet would run as a formula gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Line:
    """A file-like object whose write() hands back the line, for csv.writer in a generator."""

    def write(self, text: str) -> str:
        return text


def delimited_lines(rows: Iterable[list], *, fmt: str, columns: list[str] = EXPORT_COLUMNS) -> Iterator[str]:
    """CSV (RFC 4180 line ends) or TSV lines, the header (`columns`) first."""
    if fmt == "csv":
        writer = csv.writer(_Line(), lineterminator="\r\n")
    else:
        writer = csv.writer(_Line(), delimiter="\t", lineterminator="\n")
    yield writer.writerow(columns)
    for row in rows:
        yield writer.writerow([safe_cell(value) for value in row])


# --- Dashboard --------------------------------------------------------------------


def entry_counts_by_state() -> list[dict]:
    by_state = {
        row["archive_state"]: row
        for row in Entry.objects.filter(gone=False)
        .order_by()
        .values("archive_state")
        # COUNT(*), not COUNT(id): the entry_totals index then answers without reading the rows.
        .annotate(entries=Count("*"), bytes=Sum("total_flavor_bytes"))
    }
    return [
        {
            "state": state,
            "label": label,
            "entries": by_state.get(state, {}).get("entries", 0),
            "bytes": by_state.get(state, {}).get("bytes") or 0,
        }
        for state, label in ArchiveState.choices
    ]


MAX_YEAR_BARS = 30


def entry_bytes_by_year(*, field: str) -> list[dict]:
    """Entries and flavor bytes per calendar year (local time) of `field`, oldest first.

    For last_played_at a "never" bar comes first. One query per year over that year's range,
    which reads just that part of an index in `field`'s order (entry_browse, entry_played);
    grouping by a computed year instead read, computed and sorted every row (100-250 ms for
    100,000 entries on SQLite, against about 1 ms a year).
    """
    entries = Entry.objects.filter(gone=False)
    # The ends of the span as two ordered lookups: an index seek each, where MIN and MAX in one
    # query read every row on SQLite.
    dated = entries.filter(**{f"{field}__isnull": False}).values_list(field, flat=True)
    span = {"first": dated.order_by(field).first(), "last": dated.order_by(f"-{field}").first()}
    bars = []
    if span["first"]:
        last_year = timezone.localtime(span["last"]).year
        first_year = max(timezone.localtime(span["first"]).year, last_year - MAX_YEAR_BARS + 1)
        zone = timezone.get_current_timezone()
        for year in range(first_year, last_year + 1):
            # Open-ended at both ends, so every dated row lands in exactly one year.
            in_year = Q(**{f"{field}__isnull": False})
            if year > first_year:
                in_year &= Q(**{f"{field}__gte": dt.datetime(year, 1, 1, tzinfo=zone)})
            if year < last_year:
                in_year &= Q(**{f"{field}__lt": dt.datetime(year + 1, 1, 1, tzinfo=zone)})
            row = entries.filter(in_year).aggregate(entries=Count("*"), bytes=Sum("total_flavor_bytes"))
            bars.append({"label": str(year), "entries": row["entries"], "bytes": row["bytes"] or 0})
        if timezone.localtime(span["first"]).year < first_year:
            bars[0]["label"] = f"≤ {first_year}"  # the first bar is open-ended downwards
    if field == "last_played_at":
        never = entries.filter(last_played_at__isnull=True).aggregate(
            entries=Count("*"), bytes=Sum("total_flavor_bytes")
        )
        bars.insert(0, {"label": "never", "entries": never["entries"], "bytes": never["bytes"] or 0})
    return bars


UNPLAYED_YEARS = (1, 2, 3, 5)


def unplayed_savings(*, years: Iterable[int] = UNPLAYED_YEARS, now: dt.datetime | None = None) -> list[dict]:
    """For each N: what archiving every entry not played for N years (and not yet replaced) would save.

    Each row has the entries, flavor bytes, original bytes, and a costs.Savings per storage
    class ("savings" for the configured one, "by_class" for all). One pass: each entry is
    put in the band of the largest N it qualifies for, and "not played for N years" adds
    up the bands from N upwards.
    """
    now = now or timezone.now()
    years = sorted(set(years))
    band = Case(
        *(When(unplayed_since(years_ago(n, now)), then=Value(n)) for n in reversed(years)),
        default=Value(0),
        output_field=IntegerField(),
    )
    bands = {
        row["band"]: row
        for row in Entry.objects.filter(NOT_REPLACED, gone=False)
        .order_by()
        .annotate(band=band)  # type: ignore[no-redef]  # django-stubs 5.2 re-declares `objects` on annotate()
        .values("band")
        .annotate(
            entries=Count("*"),
            bytes=Sum("total_flavor_bytes"),
            originals=Sum("original_size_bytes"),
            objects=Count("original_size_bytes"),
        )
    }
    rows = []
    for n in years:
        included = [row for band_years, row in bands.items() if band_years >= n]
        entries = sum(row["entries"] for row in included)
        flavor_bytes = sum(row["bytes"] or 0 for row in included)
        originals = sum(row["originals"] or 0 for row in included)
        objects = sum(row["objects"] for row in included)
        freed = costs.kaltura_bytes_freed(flavor_bytes=flavor_bytes, entries=entries)
        by_class = {
            storage_class: costs.savings(
                freed_bytes=freed, archived_bytes=originals, objects=objects, storage_class=storage_class
            )
            for storage_class in settings.STORAGE_CLASSES
        }
        rows.append(
            {
                "years": n,
                "entries": entries,
                "bytes": flavor_bytes,
                "original_bytes": originals,
                "freed_bytes": freed,
                "savings": by_class[settings.ARCHIVE_STORAGE_CLASS],
                "by_class": by_class,
            }
        )
    return rows


def sync_run_latest() -> SyncRun | None:
    return SyncRun.objects.order_by("-started_at", "-pk").first()
