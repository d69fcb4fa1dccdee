from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.views.decorators.http import require_GET

from archive_app import costs, selectors
from archive_app.filters import DEFAULT_SORT
from archive_app.kaltura import pacing_status
from archive_app.models import ArchiveCopy, ArchiveState, AuditEvent, Entry
from archive_app.restores import restore_counts

BROWSE = "archive_app.browse_entries"
PAGE_SIZE = 50
# (heading, sort key or None, numeric) in table order; sort keys are filters.SORTS.
COLUMNS = [
    ("Id", "id", False),
    ("Name", "name", False),
    ("Owner", "owner", False),
    ("Created", "created", False),
    ("Last played", "last_played", False),
    ("Plays", "plays", True),
    ("Categories", None, False),
    ("Tags", None, False),
    ("Original", "original_size", True),
    ("All flavors", "total_size", True),
    ("State", "state", False),
]
# Only what the table shows: no model instances, no long descriptions.
TABLE_FIELDS = [
    "id",
    "name",
    "owner_id",
    "created_at",
    "last_played_at",
    "plays",
    "tags",
    "original_size_bytes",
    "total_flavor_bytes",
    "archive_state",
    "gone",
]
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "tsv": "text/tab-separated-values; charset=utf-8"}


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(BROWSE):
        # Signed in without a role: say so, rather than a bare 403 on the first page they see.
        return render(request, "archive_app/no_role.html")
    savings = selectors.unplayed_savings()
    return render(
        request,
        "archive_app/home.html",
        {
            "states": selectors.entry_counts_by_state(),
            "played_years": selectors.entry_bytes_by_year(field="last_played_at"),
            "created_years": selectors.entry_bytes_by_year(field="created_at"),
            "savings": savings,
            "class_comparison": [
                {"years": row["years"], "by_class": [row["by_class"][name] for name in settings.STORAGE_CLASSES]}
                for row in savings
            ],
            "storage_class": settings.ARCHIVE_STORAGE_CLASS,
            "storage_classes": settings.STORAGE_CLASSES,
            "s3_prices": settings.PRICE_S3_GB_MONTH,
            "storage_price": costs.s3_price(settings.ARCHIVE_STORAGE_CLASS),
            "kaltura_price": settings.PRICE_KALTURA_STORAGE_GB_MONTH,
            "placeholder_bytes": costs.placeholder_entry_bytes(),
            "sync_run": selectors.sync_run_latest(),
            "kaltura_pacing": pacing_status(),
            "restore_counts": restore_counts(),
        },
    )


def _columns(sort: str) -> list[dict]:
    """Table headings; a sortable one links to its ascending order, or descending if already ascending."""
    columns = []
    for heading, key, numeric in COLUMNS:
        direction = None
        if key and sort.lstrip("-") == key:
            direction = "descending" if sort.startswith("-") else "ascending"
        columns.append(
            {
                "heading": heading,
                "key": key,
                "numeric": numeric,
                "direction": direction,
                "next_sort": f"-{key}" if direction == "ascending" else key,
            }
        )
    return columns


def _shorten(text: str, length: int) -> str:
    return text if len(text) <= length else Truncator(text).chars(length)


ROW_HTML = (
    '<tr data-entry-id="{id}"><td><a href="{url}">{id}</a>{gone}</td><td class="wrap">{name}</td>'
    '<td>{owner}</td><td>{created}</td><td>{last_played}</td><td class="num">{plays}</td>'
    '<td class="wrap">{categories}</td><td class="wrap">{tags}</td><td class="num">{original}</td>'
    '<td class="num">{total}</td><td>{state}</td></tr>'
)
GONE_BADGE = ' <span class="badge text-bg-secondary">gone</span>'


def _row_html(row: dict) -> SafeString:
    """One table row's markup, escaped here: fifty rows of eleven cells through template
    lookups took about a third of a page's CPU time."""
    return mark_safe(  # every value below is escaped
        ROW_HTML.format(
            id=escape(row["id"]),
            url=escape(row["url"]),
            gone=GONE_BADGE if row["gone"] else "",
            name=escape(row["name"]),
            owner=escape(row["owner"]),
            created=escape(row["created"]),
            last_played=escape(row["last_played"]) if row["last_played"] else '<span class="text-muted">never</span>',
            plays=escape(row["plays"]),
            categories=", ".join(
                f'<span title="{escape(full_name)}">{escape(name)}</span>' for name, full_name in row["categories"]
            ),
            tags=escape(row["tags"]),
            original=escape(row["original"]) if row["original"] else '<span class="text-muted">none</span>',
            total=escape(row["total"]),
            state=escape(row["state"]),
        )
    )


def _table_rows(entries: list[dict], categories: dict[str, tuple]) -> list[dict]:
    """The table's cells, formatted here rather than by template filters: fifty rows of eleven
    cells made lookups and filters most of the page's time. `categories` is the FilterSet's
    id -> (full_ids, full_name, name) map, so the page needs no Category objects."""
    states = dict(ArchiveState.choices)
    links = selectors.entry_category_ids(entry_ids=[entry["id"] for entry in entries])
    detail_url = reverse("entry_detail", args=["0_x"]).replace("0_x", "{}")  # one reverse() per page
    rows = []
    for entry in entries:
        last_played = entry["last_played_at"]
        original = entry["original_size_bytes"]
        rows.append(
            {
                "id": entry["id"],
                "url": detail_url.format(quote(entry["id"])),
                "gone": entry["gone"],
                "name": _shorten(entry["name"], 80),
                "owner": entry["owner_id"],
                "created": timezone.localtime(entry["created_at"]).date().isoformat(),
                "last_played": last_played and timezone.localtime(last_played).date().isoformat(),
                "plays": f"{entry['plays']:,}",
                "categories": [
                    (categories[key][2], categories[key][1])  # (name, full name)
                    for key in map(str, links.get(entry["id"], []))
                    if key in categories
                ],
                "tags": _shorten(entry["tags"], 120),
                "original": None if original is None else filesizeformat(original),
                "total": filesizeformat(entry["total_flavor_bytes"]),
                "state": states.get(entry["archive_state"], entry["archive_state"]),
            }
        )
        rows[-1]["html"] = _row_html(rows[-1])
    return rows


@require_GET
@permission_required(BROWSE, raise_exception=True)
def entry_list(request: HttpRequest) -> HttpResponse:
    """The browse page. Invalid filters show their errors above an empty table (status 200):
    the page stays usable for correcting them, and nothing wider than asked for is listed."""
    filterset = selectors.entry_filterset(data=request.GET)
    page = totals = None
    rows = []
    sort = DEFAULT_SORT
    if filterset.is_valid():
        sort = filterset.form.cleaned_data.get("sort") or DEFAULT_SORT
        queryset = filterset.qs
        totals = selectors.entry_selection_totals(queryset=queryset)
        paginator = Paginator(queryset.values(*TABLE_FIELDS), PAGE_SIZE)
        paginator.count = totals.entries  # counted already by the totals query: save a second COUNT
        page = paginator.get_page(request.GET.get("page"))
        rows = _table_rows(list(page.object_list), filterset.categories)
    return render(
        request,
        "archive_app/entry_list.html",
        {
            "filterset": filterset,
            "form": filterset.form,
            "page": page,
            "rows": rows,
            "totals": totals,
            "columns": _columns(sort),
        },
    )


@require_GET
@permission_required(BROWSE, raise_exception=True)
def entry_export(request: HttpRequest, fmt: str) -> HttpResponse:
    """The current selection, every page, streamed as CSV or TSV."""
    filterset = selectors.entry_filterset(data=request.GET)
    if not filterset.is_valid():
        lines = [f"{name}: {' '.join(errors)}" for name, errors in filterset.errors.items()]
        return HttpResponse("\n".join(lines) + "\n", status=400, content_type="text/plain; charset=utf-8")
    rows = selectors.entry_export_rows(queryset=filterset.qs)
    response = StreamingHttpResponse(selectors.delimited_lines(rows, fmt=fmt), content_type=EXPORT_TYPES[fmt])
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="kaltura-entries-{stamp}.{fmt}"'
    return response


@require_GET
@permission_required(BROWSE, raise_exception=True)
def entry_detail(request: HttpRequest, entry_id: str) -> HttpResponse:
    try:
        entry = selectors.entry_detail(entry_id=entry_id)
    except Entry.DoesNotExist:
        raise Http404("No entry with this id in the mirror.") from None
    return render(
        request,
        "archive_app/entry_detail.html",
        {
            "entry": entry,
            "flavors": list(entry.flavors.all()),
            "categories": sorted(entry.categories.all(), key=lambda category: category.full_name),
            "archive_copy": ArchiveCopy.objects.filter(entry_id=entry.id).first(),
            "events": AuditEvent.objects.filter(entry_id=entry.id).select_related("batch")[:200],
            # Only a web address becomes an <img>: the mirror holds whatever Kaltura sent.
            "thumbnail_url": entry.thumbnail_url if entry.thumbnail_url.startswith(("https://", "http://")) else "",
        },
    )
