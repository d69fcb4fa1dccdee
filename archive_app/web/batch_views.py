"""Pages for batches: create from the browse filter, preview, approve, watch, cancel, retry."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ImproperlyConfigured
from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from archive_app.archive import batches
from archive_app.lib.kaltura import Kaltura, KalturaError, pacing_status
from archive_app.lib.storage import ArchiveStore, StorageError
from archive_app.mirror import costs, selectors
from archive_app.mirror.selection import Selection
from archive_app.models import Batch, BatchItem, Entry
from archive_app.web.error_views import bad_request

RUN = "archive_app.run_batches"
ITEMS_PER_PAGE = 100


@require_POST
@permission_required(RUN, raise_exception=True)
def batch_create(request: HttpRequest) -> HttpResponse:
    """A previewed draft batch of the page's filter, or (source=selection) of the checked entries."""
    action = request.POST.get("action", "")
    if action not in Batch.Action.values:
        return bad_request(request, f"{action!r} is not a batch action; nothing was done.")
    selection = Selection(request.session)
    from_selection = request.POST.get("source") == "selection"
    if from_selection:
        filter_query = selection.filter_query or ""
        back = reverse("entry_list") + (f"?{filter_query}" if filter_query else "")
    else:
        filter_query = QueryDict(request.POST.get("filter_query", "").lstrip("?")[:8000]).urlencode()
        back = f"{reverse('entry_list')}?{filter_query}"
    try:
        entries = selection.queryset() if from_selection else selectors.entry_list(data=QueryDict(filter_query))
    except selectors.InvalidSelection:
        messages.error(request, "The filter is not valid; correct it before making a batch.")
        return redirect(back)
    if from_selection and selection.empty:
        messages.error(request, "No entries are selected: tick some rows, or select all that match.")
        return redirect(back)
    # The real count, so a selection over the cap says how large it is (not "cap + 1").
    selected, limit = entries.count(), settings.ARCHIVE_MAX_BATCH_SIZE
    if selected > limit:
        messages.error(
            request,
            f"The selection has {selected:,} entries; a batch may have at most {limit:,}. Narrow the filter "
            "(for example by creation year), or raise ARCHIVE_MAX_BATCH_SIZE.",
        )
        return redirect(back)
    entry_ids = list(entries.values_list("id", flat=True))
    if from_selection and not selection.is_filter:
        filter_query = QueryDict(mutable=True)
        filter_query["ids"] = " ".join(entry_ids)
        filter_query = filter_query.urlencode() if len(filter_query.urlencode()) <= 4000 else ""
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
    if from_selection:
        selection.clear()
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
    done = sum(counts.get(s, 0) for s in ("done", "skipped", "failed", "errored", "cancelled"))
    total = sum(counts.values())
    return {
        "counts": counts,
        "total": total,
        "finished": done,
        "retryable": counts.get("failed", 0) + counts.get("errored", 0),
        "percent": round(100 * done / total) if total else 100,
        "bytes_copied": sums["copied"] or 0,
        "bytes_freed": batch.items.filter(status=BatchItem.Status.DONE).aggregate(s=Sum("bytes_freed"))["s"] or 0,
    }


@require_GET
@permission_required(RUN, raise_exception=True)
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    """Reads only (htmx polls it every 2 s): items whose worker died are released by the scheduled
    job (jobs.release_stale_items_job) and by the cancel and retry actions."""
    batch = get_object_or_404(Batch.objects.select_related("created_by", "approved_by"), pk=batch_id)
    items = Paginator(batch.items.order_by("pk"), ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    names = dict(Entry.objects.filter(id__in=[item.entry_id for item in items]).values_list("id", "name"))
    for item in items:
        item.entry_name = names.get(item.entry_id, "")
    context = {
        "batch": batch,
        "items": items,
        "policy_selected": _policy_selected(batch),
        "max_batch_size": settings.ARCHIVE_MAX_BATCH_SIZE,
        "totals": batches.preview_totals(batch),
        "progress": _progress(batch),
        "kaltura_pacing": pacing_status(),
        "can_approve": _can_approve(batch, request.user),
        "needs_second": batch.status == Batch.Status.DRAFT and batch.approved_by_id is not None,
    }
    template = "archive_app/_batch_progress.html" if request.htmx else "archive_app/batch_detail.html"
    return render(request, template, context)


def _policy_selected(batch: Batch) -> int | None:
    """For a draft made by a policy: how many entries the policy selects now (a batch takes at most the cap)."""
    notice = getattr(batch, "notice", None)
    if batch.status != Batch.Status.DRAFT or notice is None or notice.policy is None:
        return None
    try:
        return selectors.entry_list(data=QueryDict(notice.policy.filter_query)).count()
    except selectors.InvalidSelection:
        return None


def _can_approve(batch: Batch, user) -> bool:
    return batch.status == Batch.Status.DRAFT and not (batch.approved_by_id and batch.approved_by_id == user.pk)


def approval_summary(batch: Batch) -> dict:
    """What approving would do, in totals: the numbers the librarian confirms."""
    totals = batches.preview_totals(batch)
    to_process = batch.items.filter(skip_reason="")
    new_copies = to_process.filter(bytes_to_copy__gt=0).count()
    savings = costs.savings(freed_bytes=totals.bytes_freed, archived_bytes=totals.bytes_to_copy, objects=new_copies)
    owners = list(
        Entry.objects.filter(id__in=to_process.values("entry_id"))
        .order_by()
        .values("owner_id")
        .annotate(entries=Count("*"))
        .order_by("-entries", "owner_id")
    )
    notice = getattr(batch, "notice", None)
    return {
        "totals": totals,
        "savings": savings,
        "owners": owners,
        "notice_days": notice.notice_days if notice else 0,
    }


@require_GET
@permission_required(RUN, raise_exception=True)
def batch_confirm(request: HttpRequest, batch_id: int) -> HttpResponse:
    """The last look before approving: the totals, the saving and who is warned (reads only)."""
    batch = get_object_or_404(Batch.objects.select_related("created_by", "approved_by"), pk=batch_id)
    context = {"batch": batch, "can_approve": _can_approve(batch, request.user), **approval_summary(batch)}
    return render(request, "archive_app/batch_confirm.html", context)


@require_POST
@permission_required(RUN, raise_exception=True)
def batch_approve(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch, pk=batch_id)
    if request.POST.get("confirmed") != "yes":
        # Approving takes the confirmation page's button, which has seen the totals.
        messages.info(request, "Check the totals, then confirm.")
        return redirect("batch_confirm", batch_id=batch_id)
    try:
        batch = batches.batch_approve(batch, user=request.user)
    except batches.BatchError as exc:
        messages.error(request, str(exc))
    else:
        batch.refresh_from_db(fields=["status"])
        totals = batches.preview_totals(batch)
        entries = f"{totals.to_process:,} entr{'y' if totals.to_process == 1 else 'ies'}"
        skipped = f" ({totals.skipped:,} skipped)" if totals.skipped else ""
        if batch.status == Batch.Status.DRAFT:
            messages.info(request, f"Approved {entries}{skipped}. A second librarian must approve it before it runs.")
        elif batch.status == Batch.Status.APPROVED:
            messages.success(
                request, f"Approved {entries}{skipped}: the owners are being warned; it runs after the notice period."
            )
        else:
            messages.success(request, f"Approved: {entries} running{skipped}.")
    return redirect("batch_detail", batch_id=batch_id)


@require_POST
@permission_required(RUN, raise_exception=True)
def batch_cancel(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch, pk=batch_id)
    batches.release_stale_items(batch)  # a dead worker's item is not left "running" in a cancelled batch
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
    from archive_app.archive.fixity import failing_copies
    from archive_app.archive.health import UNVERSIONED_BUCKET, entry_problems
    from archive_app.archive.restores import known_placeholder_sizes
    from archive_app.archive.workflow import read_live_states
    from archive_app.lib.kaltura import Kaltura
    from archive_app.lib.storage import ArchiveStore

    query = request.GET.copy()
    if not query:
        query.setlist("state", ["archived", "placeholder"])
    context = {"query": query.urlencode(), "limit": HEALTH_LIMIT, "rows": [], "error": ""}
    # Recorded by the fixity audit, so shown even when Kaltura or S3 cannot be read right now.
    context["fixity_failures"] = list(failing_copies()[:HEALTH_LIMIT])
    try:
        entries = selectors.entry_list(data=query)
        entry_ids = list(entries.values_list("id", flat=True)[:HEALTH_LIMIT])
        store = ArchiveStore.from_settings()
        states = read_live_states(entry_ids, Kaltura.from_settings(), store)
        safety = store.bucket_safety()
        context["bucket_warning"] = "" if safety.versioning == "Enabled" else UNVERSIONED_BUCKET
        context["bucket_safety"] = safety
    except selectors.InvalidSelection:
        context["error"] = "The filter is not valid."
    except (KalturaError, StorageError, ImproperlyConfigured) as exc:
        context["error"] = f"Could not read the live state: {exc}"
    else:
        context["checked"] = len(entry_ids)
        known = known_placeholder_sizes()
        context["rows"] = [
            {"entry_id": entry_id, "problems": problems}
            for entry_id in entry_ids
            if (problems := entry_problems(states[entry_id], known_placeholder_sizes=known))
        ]
    return render(request, "archive_app/health.html", context, status=400 if context["error"] else 200)
