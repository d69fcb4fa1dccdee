"""The audit log: every event, newest first, filtered and exported. Librarians and archive admins read it;
only archive admins see e-mail and IP addresses (privacy.masked_for), on the page and in the export alike.
Nobody can change it (AuditEvent refuses updates and deletes, and no page offers them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote, urlencode

from django.contrib.auth.decorators import permission_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.views.decorators.http import require_GET

from archive_app.lib.privacy import masked, sees_personal_data
from archive_app.mirror.filters import AuditEventFilterSet
from archive_app.mirror.selectors import delimited_lines
from archive_app.models import AuditEvent, Entry
from archive_app.web import wording

READ = "archive_app.browse_entries"  # the Librarians role (archive admins have it too)

PAGE_SIZE = 100
COUNT_LIMIT = 10_000  # events counted and paged; a multiple of PAGE_SIZE
ACTIONS_CACHE_KEY = "audit_log_actions"
ACTIONS_CACHE_SECONDS = 300
EXPORT_CHUNK_SIZE = 2000
TABLE_FIELDS = [
    "id",
    "created_at",
    "username",
    "action",
    "entry_id",
    "batch_id",
    "dry_run",
    "outcome",
    "message",
    "details",
]
PERSONAL_FIELDS = ["username", "message", "details"]  # where e-mail and IP addresses may be
EXPORT_COLUMNS = ["at", "user", "action", "entry_id", "batch", "mode", "outcome", "message", "details"]


def audit_filterset(*, data) -> AuditEventFilterSet:
    """A bound FilterSet over all events, newest first; callers check `is_valid()` before `.qs`."""
    return AuditEventFilterSet(data=data, queryset=AuditEvent.objects.order_by("-created_at", "-id"))


def _export_rows(queryset: QuerySet[AuditEvent], *, mask: bool) -> Iterator[list]:
    for event in queryset.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        row = [
            event.created_at.isoformat(),
            event.username,
            event.action,
            event.entry_id,
            event.batch_id or "",
            "dry run" if event.dry_run else "real",
            event.outcome,
            event.message,
            json.dumps(event.details, sort_keys=True) if event.details else "",
        ]
        yield masked(row) if mask else row


class CappedPaginator(Paginator):
    """Counts at most COUNT_LIMIT events: counting a large log took most of the page's time
    (bench/bench_audit_log.py), and nobody pages through more; filters and the export reach the rest."""

    @cached_property
    def count(self) -> int:
        # Unordered: the database may stop at the limit in whatever order it reads rows.
        return self.object_list.order_by()[: COUNT_LIMIT + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > COUNT_LIMIT

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, COUNT_LIMIT // self.per_page)


def recorded_actions() -> list[str]:
    """Every action in the log, for the filter's suggestions; a DISTINCT over the whole log, so
    remembered for a few minutes (per process: a new action shows up in the list a little later)."""
    return cache.get_or_set(
        ACTIONS_CACHE_KEY,
        lambda: list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()),
        ACTIONS_CACHE_SECONDS,
    )


def _table_rows(events: list[dict], *, mask: bool) -> list[dict]:
    """The table's cells, formatted here: a hundred rows of template tags and {% url %} took most
    of the page's time (see bench/bench_audit_log.py). A masked user name links nowhere: its link
    would carry the address."""
    log_url = reverse("audit_log")
    entry_url = reverse("entry_detail", args=["0_x"]).replace("0_x", "{}")  # one reverse() per page
    batch_url = reverse("batch_detail", args=[0]).replace("/0/", "/{}/")
    badges = {AuditEvent.Outcome.OK: "success", AuditEvent.Outcome.SKIPPED: "secondary"}
    names = dict(
        Entry.objects.filter(id__in={event["entry_id"] for event in events if event["entry_id"]}).values_list(
            "id", "name"
        )
    )
    rows = []
    for event in events:
        shown = masked({key: event[key] for key in PERSONAL_FIELDS}) if mask else event
        rows.append(
            {
                "id": event["id"],
                "when": timezone.localtime(event["created_at"]).strftime("%Y-%m-%d %H:%M:%S"),
                "user": shown["username"],
                "user_url": f"{log_url}?{urlencode({'user': event['username']})}"
                if shown["username"] == event["username"]
                else "",
                "action": event["action"],
                "action_label": wording.action_label(event["action"]),
                "entry_id": event["entry_id"],
                "entry_name": names.get(event["entry_id"], ""),
                "entry_url": entry_url.format(quote(event["entry_id"])) if event["entry_id"] else "",
                "batch_id": event["batch_id"] or "",
                "batch_url": batch_url.format(event["batch_id"]) if event["batch_id"] else "",
                "real": not event["dry_run"],
                "outcome": event["outcome"],
                "badge": badges.get(event["outcome"], "danger"),
                "message": shown["message"],
                "details": json.dumps(shown["details"], indent=1, sort_keys=True) if event["details"] else "",
            }
        )
    return rows


@require_GET
@permission_required(READ, raise_exception=True)
def audit_log(request: HttpRequest) -> HttpResponse:
    """Invalid filters show their errors above an empty table (200), as on the browse page:
    never a wider list than asked for."""
    filterset = audit_filterset(data=request.GET)
    page = None
    rows = []
    if filterset.is_valid():
        page = CappedPaginator(filterset.qs.values(*TABLE_FIELDS), PAGE_SIZE).get_page(request.GET.get("page"))
        rows = _table_rows(list(page.object_list), mask=not sees_personal_data(request.user))
    context = {"form": filterset.form, "page": page, "rows": rows, "actions": recorded_actions()}
    context["count_limit"] = COUNT_LIMIT
    return render(request, "archive_app/audit_log.html", context)


@require_GET
@permission_required(READ, raise_exception=True)
def audit_export(request: HttpRequest) -> HttpResponse:
    """The filtered events, every page, streamed as CSV."""
    filterset = audit_filterset(data=request.GET)
    if not filterset.is_valid():
        lines = [f"{name}: {' '.join(errors)}" for name, errors in filterset.errors.items()]
        return HttpResponse("\n".join(lines) + "\n", status=400, content_type="text/plain; charset=utf-8")
    rows = _export_rows(filterset.qs, mask=not sees_personal_data(request.user))
    lines = delimited_lines(rows, fmt="csv", columns=EXPORT_COLUMNS)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="kaltura-archive-audit-{stamp}.csv"'
    return response
