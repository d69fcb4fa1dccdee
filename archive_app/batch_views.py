"""Pages for batches: create from the browse filter, preview, approve, watch, cancel, retry."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ImproperlyConfigured
from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from archive_app import batches, selectors
from archive_app.kaltura import Kaltura, KalturaError, pacing_status
from archive_app.models import Batch, BatchItem
from archive_app.storage import ArchiveStore, StorageError

RUN = "archive_app.run_batches"
ITEMS_PER_PAGE = 100


@require_POST
@permission_required(RUN, raise_exception=True)
def batch_create(request: HttpRequest) -> HttpResponse:
    action = request.POST.get("action", "")
    if action not in Batch.Action.values:
        return HttpResponseBadRequest("unknown action")
    filter_query = request.POST.get("filter_query", "").lstrip("?")
    back = f"/entries/?{filter_query}"
    try:
        entries = selectors.entry_list(data=QueryDict(filter_query))
    except selectors.InvalidSelection:
        messages.error(request, "The filter is not valid; correct it before making a batch.")
        return redirect(back)
    entry_ids = list(entries.values_list("id", flat=True)[: 1 + settings.ARCHIVE_MAX_BATCH_SIZE])
    try:
        # Settings first: a batch that could never be previewed is not made at all.
        kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
        batch = batches.batch_create(
            user=request.user,
            action=action,
            entry_ids=entry_ids,
            filter_query=filter_query,
            preview=True,
            kaltura=kaltura,
            store=store,
        )
    except batches.BatchError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    except (KalturaError, StorageError, ImproperlyConfigured) as exc:
        messages.error(request, f"The preview could not read the live state: {exc}")
        return redirect(back)
    return redirect("batch_detail", batch_id=batch.pk)


@require_GET
@permission_required(RUN, raise_exception=True)
def batch_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(
        Batch.objects.select_related("created_by", "approved_by").annotate(entries=Count("items")).order_by("-pk"), 50
    ).get_page(request.GET.get("page"))
    return render(request, "archive_app/batch_list.html", {"page": page})


def _progress(batch: Batch) -> dict:
    counts = dict(batch.items.values_list("status").annotate(n=Count("id")))
    sums = batch.items.aggregate(copied=Sum("bytes_copied"), freed=Sum("bytes_freed"))
    done = sum(counts.get(s, 0) for s in ("done", "skipped", "failed", "cancelled"))
    total = sum(counts.values())
    return {
        "counts": counts,
        "total": total,
        "finished": done,
        "percent": round(100 * done / total) if total else 100,
        "bytes_copied": sums["copied"] or 0,
        "bytes_freed": batch.items.filter(status=BatchItem.Status.DONE).aggregate(s=Sum("bytes_freed"))["s"] or 0,
    }


@require_GET
@permission_required(RUN, raise_exception=True)
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch.objects.select_related("created_by", "approved_by"), pk=batch_id)
    if batches.release_stale_items(batch):
        batches.refresh_batch_status(batch.pk)
        batch.refresh_from_db()
    items = Paginator(batch.items.all(), ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "batch": batch,
        "items": items,
        "totals": batches.preview_totals(batch),
        "progress": _progress(batch),
        "kaltura_pacing": pacing_status(),
        "can_approve": batch.status == Batch.Status.DRAFT
        and not (batch.approved_by_id and batch.approved_by_id == request.user.pk),
        "needs_second": batch.status == Batch.Status.DRAFT and batch.approved_by_id is not None,
    }
    template = "archive_app/_batch_progress.html" if request.htmx else "archive_app/batch_detail.html"
    return render(request, template, context)


@require_POST
@permission_required(RUN, raise_exception=True)
def batch_approve(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch, pk=batch_id)
    try:
        batch = batches.batch_approve(batch, user=request.user)
    except batches.BatchError as exc:
        messages.error(request, str(exc))
    else:
        batch.refresh_from_db(fields=["status"])
        if batch.status == Batch.Status.DRAFT:
            messages.info(request, "Approved. A second librarian must approve it too before it runs.")
        elif batch.status == Batch.Status.APPROVED:
            messages.success(request, "Approved: the owners are being warned; it runs when the notice period ends.")
        else:
            messages.success(request, "Approved: the batch is running.")
    return redirect("batch_detail", batch_id=batch_id)


@require_POST
@permission_required(RUN, raise_exception=True)
def batch_cancel(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch, pk=batch_id)
    cancelled = batches.batch_cancel(batch, user=request.user)
    messages.info(request, f"Cancelled {cancelled} entries that had not started.")
    return redirect("batch_detail", batch_id=batch_id)


@require_POST
@permission_required(RUN, raise_exception=True)
def batch_retry(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch, pk=batch_id)
    try:
        queued = batches.batch_retry_failed(batch, user=request.user)
    except (KalturaError, StorageError, ImproperlyConfigured) as exc:
        messages.error(request, f"The preview could not read the live state: {exc}")
    else:
        messages.info(request, f"Previewed the failed entries again and queued {queued}.")
    return redirect("batch_detail", batch_id=batch_id)


HEALTH_LIMIT = 500


@require_GET
@permission_required("archive_app.browse_entries", raise_exception=True)
def health(request: HttpRequest) -> HttpResponse:
    """The archive's invariants checked on live Kaltura and S3 state, for a selection (default: archived)."""
    from archive_app.health import entry_problems
    from archive_app.kaltura import Kaltura
    from archive_app.storage import ArchiveStore
    from archive_app.workflow import read_live_states

    query = request.GET.copy()
    if not query:
        query.setlist("state", ["archived", "placeholder"])
    context = {"query": query.urlencode(), "limit": HEALTH_LIMIT, "rows": [], "error": ""}
    try:
        entries = selectors.entry_list(data=query)
        entry_ids = list(entries.values_list("id", flat=True)[:HEALTH_LIMIT])
        states = read_live_states(entry_ids, Kaltura.from_settings(), ArchiveStore.from_settings())
    except selectors.InvalidSelection:
        context["error"] = "The filter is not valid."
    except (KalturaError, StorageError, ImproperlyConfigured) as exc:
        context["error"] = f"Could not read the live state: {exc}"
    else:
        context["checked"] = len(entry_ids)
        context["rows"] = [
            {"entry_id": entry_id, "problems": problems}
            for entry_id in entry_ids
            if (problems := entry_problems(states[entry_id]))
        ]
    return render(request, "archive_app/health.html", context, status=400 if context["error"] else 200)
