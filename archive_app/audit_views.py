"""The audit log: every event, newest first, filtered and exported. Every signed-in user may read it;
nobody can change it (AuditEvent refuses updates and deletes, and no page offers them)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from archive_app.filters import AuditEventFilterSet
from archive_app.models import AuditEvent
from archive_app.selectors import delimited_lines

PAGE_SIZE = 100
EXPORT_CHUNK_SIZE = 2000
EXPORT_COLUMNS = ["at", "user", "action", "entry_id", "batch", "mode", "outcome", "message", "details"]


def audit_filterset(*, data) -> AuditEventFilterSet:
    """A bound FilterSet over all events, newest first; callers check `is_valid()` before `.qs`."""
    return AuditEventFilterSet(data=data, queryset=AuditEvent.objects.order_by("-created_at", "-id"))


def _export_rows(queryset: QuerySet[AuditEvent]) -> Iterator[list]:
    for event in queryset.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        yield [
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


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """Invalid filters show their errors above an empty table (200), as on the browse page:
    never a wider list than asked for."""
    filterset = audit_filterset(data=request.GET)
    page = None
    if filterset.is_valid():
        page = Paginator(filterset.qs.select_related("batch"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "archive_app/audit_log.html", {"form": filterset.form, "page": page})


@require_GET
def audit_export(request: HttpRequest) -> HttpResponse:
    """The filtered events, every page, streamed as CSV."""
    filterset = audit_filterset(data=request.GET)
    if not filterset.is_valid():
        lines = [f"{name}: {' '.join(errors)}" for name, errors in filterset.errors.items()]
        return HttpResponse("\n".join(lines) + "\n", status=400, content_type="text/plain; charset=utf-8")
    lines = delimited_lines(_export_rows(filterset.qs), fmt="csv", columns=EXPORT_COLUMNS)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="kaltura-archive-audit-{stamp}.csv"'
    return response
