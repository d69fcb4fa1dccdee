from __future__ import annotations

from collections.abc import Set as AbstractSet
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.views.decorators.http import require_GET, require_POST

from archive_app.archive import holds, preservation
from archive_app.archive.restores import restore_counts
from archive_app.lib.kaltura import pacing_status
from archive_app.mirror import costs, selectors
from archive_app.mirror.filters import DEFAULT_SORT
from archive_app.mirror.selection import Selection
from archive_app.models import ArchiveCopy, ArchiveState, AuditEvent, Entry, LegalHold, SyncRun

BROWSE = "archive_app.browse_entries"
MANAGE = "archive_app.manage_archive"
PAGE_SIZE = 50
# (heading, sort key or None, numeric) in table order; sort keys are filters.SORTS.
COLUMNS = [
    ("Select", None, False),
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
    '<tr data-entry-id="{id}"><td><input class="form-check-input" type="checkbox" name="checked" value="{id}" '
    'form="selection-form" aria-label="Select {id} {name}"{checked}></td>'
    '<td><a href="{url}">{id}</a>{gone}</td><td class="wrap">{name}</td>'
    '<td class="wrap-short">{owner}</td><td>{created}</td><td>{last_played}</td><td class="num">{plays}</td>'
    '<td class="wrap">{categories}</td><td class="wrap">{tags}</td><td class="num">{original}</td>'
    '<td class="num">{total}</td><td class="wrap-short">{state}</td></tr>'
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
            checked=" checked" if row["checked"] else "",
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


def _table_rows(
    entries: list[dict], categories: dict[str, tuple], checked: AbstractSet[str] = frozenset()
) -> list[dict]:
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
                "checked": entry["id"] in checked,
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
    selection = Selection(request.session)
    page = totals = None
    rows = []
    sort = DEFAULT_SORT
    if filterset.is_valid():
        sort = filterset.form.cleaned_data.get("sort") or DEFAULT_SORT
        queryset = filterset.qs
        totals = selectors.entry_selection_totals(queryset=queryset, estimate=True)
        paginator = Paginator(queryset.values(*TABLE_FIELDS), PAGE_SIZE)
        paginator.count = totals.entries  # counted already by the totals query: save a second COUNT
        page = paginator.get_page(request.GET.get("page"))
        entries = list(page.object_list)
        checked = selection.checked_among([entry["id"] for entry in entries])
        rows = _table_rows(entries, filterset.categories, checked)
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
            "selection": selection,
            "shown_ids": " ".join(row["id"] for row in rows),
            "selected": selection.count(),
            "filter_query": _filter_query(request.GET),
            "page_query": request.GET.urlencode(),
        },
    )


def _filter_query(query: QueryDict) -> str:
    """The selection part of a browse address: without the page and the sort."""
    data = query.copy()
    for key in ("page", "sort"):
        data.pop(key, None)
    return data.urlencode()


@require_POST
@permission_required(BROWSE, raise_exception=True)
def entry_selection(request: HttpRequest) -> HttpResponse:
    """Change the session's selection: `op` is page (these rows shown, these checked), all or clear.

    Answers the page's script with the new count as JSON, and a form without script with the
    Entries page it came from (`back`: its query string, re-encoded so it stays on this site).
    """
    selection = Selection(request.session)
    op = request.POST.get("op", "")
    back = QueryDict(request.POST.get("back", "")[:8000]).urlencode()
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    refusal = ""
    if op == "page":
        selection.update_page(shown=request.POST.getlist("shown"), checked=request.POST.getlist("checked"))
    elif op == "all":
        try:
            selection.select_all(_filter_query(QueryDict(request.POST.get("filter_query", "")[:8000])))
        except selectors.InvalidSelection:
            refusal = "The filter is not valid; correct it before selecting."
    elif op == "clear":
        selection.clear()
    else:
        refusal = "Unknown change to the selection."
    if refusal and wants_json:
        return JsonResponse({"error": refusal}, status=400)
    if refusal:
        messages.error(request, refusal)
        return redirect(reverse("entry_list") + (f"?{back}" if back else ""))
    count = selection.count()
    if wants_json:
        return JsonResponse({"selected": count})
    if op != "page" or count:
        messages.info(request, f"{count:,} entries selected." if count else "The selection is cleared.")
    return redirect(reverse("entry_list") + (f"?{back}" if back else ""))


@require_GET
@permission_required(BROWSE, raise_exception=True)
def entry_export(request: HttpRequest, fmt: str) -> HttpResponseBase:
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
    # A row read after the last sync finished was refreshed by a job (sync.refresh_entries).
    last_sync = SyncRun.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
    # Every S3 object this entry has: the first copy and one per later content (Meta.ordering: newest first).
    archive_copies = list(ArchiveCopy.objects.filter(entry_id=entry.id))
    return render(
        request,
        "archive_app/entry_detail.html",
        {
            "entry": entry,
            "refreshed_by_job": last_sync is None or entry.synced_at > last_sync.finished_at,
            "flavors": list(entry.flavors.all()),
            "categories": sorted(entry.categories.all(), key=lambda category: category.full_name),
            "archive_copy": archive_copies[0] if archive_copies else None,
            "archive_copies": archive_copies,
            "legal_hold": LegalHold.objects.filter(entry_id=entry.id).select_related("placed_by").first(),
            "events": AuditEvent.objects.filter(entry_id=entry.id).select_related("batch")[:200],
            # Only a web address becomes an <img>: the mirror holds whatever Kaltura sent.
            "thumbnail_url": entry.thumbnail_url if entry.thumbnail_url.startswith(("https://", "http://")) else "",
        },
    )


@require_POST
@permission_required(MANAGE, raise_exception=True)
def entry_legal_hold(request: HttpRequest, entry_id: str) -> HttpResponse:
    """Place (with a reason) or release an entry's legal hold: archive admins only, audited."""
    if not Entry.objects.filter(id=entry_id).exists():
        raise Http404("No entry with this id in the mirror.")
    try:
        if request.POST.get("action") == "release":
            holds.hold_release(entry_id, user=request.user)
            messages.info(request, f"{entry_id}: legal hold released.")
        else:
            holds.hold_place(entry_id, user=request.user, reason=request.POST.get("reason", ""))
            messages.info(request, f"{entry_id}: under legal hold.")
    except holds.HoldError as exc:
        messages.error(request, str(exc))
        return redirect("entry_detail", entry_id)
    return redirect("entry_detail", entry_id)


@require_GET
@permission_required(BROWSE, raise_exception=True)
def preservation_report(request: HttpRequest) -> HttpResponse:
    """For an auditor: copies, fixity and re-hash coverage per storage class, and the NDSA level reached."""
    return render(request, "archive_app/preservation_report.html", {"report": preservation.preservation_report()})


@require_GET
@permission_required(BROWSE, raise_exception=True)
def preservation_export(request: HttpRequest) -> HttpResponse:
    report = preservation.preservation_report()
    response = HttpResponse(
        "".join(selectors.delimited_lines(preservation.csv_rows(report), fmt="csv", columns=preservation.CSV_HEADER)),
        content_type="text/csv; charset=utf-8",
    )
    stamp = timezone.localtime(report.generated_at).strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="kaltura-archive-preservation-{stamp}.csv"'
    return response
