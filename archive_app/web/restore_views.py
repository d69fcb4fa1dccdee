"""Pages for restores: find an entry, choose the tier, preview, confirm; the list of restores; retry."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from archive_app.archive import restores
from archive_app.archive.workflow import read_live_state
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.lib.storage import ARCHIVE_CLASSES, ArchiveStore, StorageError
from archive_app.models import ArchiveCopy, AuditEvent, Entry, Restore

RESTORE = "archive_app.restore_entries"
ENTRY_ID = re.compile(r"^[A-Za-z0-9_]{1,32}$")
DONE_SHOWN = 50


class RestoreForm(forms.Form):
    entry_id = forms.CharField(max_length=32, label="Entry id", strip=True)
    tier = forms.ChoiceField(choices=Restore.Tier.choices, required=False)
    # The admin played the entry and saw a placeholder this archive never recorded (the old tool's).
    confirm_placeholder = forms.BooleanField(required=False)

    def clean_entry_id(self) -> str:
        entry_id = self.cleaned_data["entry_id"]
        if not ENTRY_ID.match(entry_id):
            raise forms.ValidationError("A Kaltura entry id has letters, digits and _ only, e.g. 0_abcd1234.")
        return entry_id


@require_GET
@permission_required(RESTORE, raise_exception=True)
def restore_list(request: HttpRequest) -> HttpResponse:
    rows = Restore.objects.select_related("requested_by")
    context = {
        "waiting": rows.filter(status=Restore.Status.WAITING).order_by("expected_ready_at"),
        "under_way": rows.filter(
            status__in=[Restore.Status.REQUESTED, Restore.Status.UPLOADING, Restore.Status.CONVERTING]
        ),
        "failed": rows.filter(status__in=[Restore.Status.FAILED, Restore.Status.ERRORED]),
        "done": rows.filter(status=Restore.Status.DONE).order_by("-finished_at")[:DONE_SHOWN],
        "counts": restores.restore_counts(),
    }
    for name in ("waiting", "under_way", "failed", "done"):
        context[name] = _with_names(list(context[name]))
    return render(request, "archive_app/restore_list.html", context)


def _with_names(rows: list[Restore]) -> list[Restore]:
    """Each restore with its entry's name from the mirror (`entry_name`), in one query."""
    names = dict(Entry.objects.filter(id__in=[row.entry_id for row in rows]).values_list("id", "name"))
    for row in rows:
        row.entry_name = names.get(row.entry_id, "")
    return rows


@require_GET
@permission_required(RESTORE, raise_exception=True)
def restore_new(request: HttpRequest) -> HttpResponse:
    """Find the entry; show its copy and the tiers its class allows; with a tier, the plan (a dry run)."""
    context: dict = {"form": RestoreForm(), "error": ""}
    if "entry_id" not in request.GET:
        return render(request, "archive_app/restore_new.html", context)
    form = RestoreForm(request.GET)
    context["form"] = form
    if not form.is_valid():
        return render(request, "archive_app/restore_new.html", context, status=400)
    entry_id, tier = form.cleaned_data["entry_id"], form.cleaned_data["tier"]
    confirmed = form.cleaned_data["confirm_placeholder"]
    context.update(
        confirmed=confirmed,
        entry_id=entry_id,
        entry=Entry.objects.filter(id=entry_id).first(),
        archive_copy=ArchiveCopy.objects.filter(entry_id=entry_id).first(),
        active=restores.active_restore(entry_id),
    )
    try:
        kaltura, store = Kaltura.from_settings(), ArchiveStore.from_settings()
        state = read_live_state(entry_id, kaltura, store)
        context.update(live=state, s3=state.s3)
        if state.s3 is not None:
            context["tiers"] = restores.tiers_for(state.s3.storage_class)
            context["needs_restore"] = state.s3.storage_class in ARCHIVE_CLASSES and not state.s3.readable
            if tier or not context["needs_restore"]:
                tier = tier or "Standard"
                context["tier"] = tier
                context["plan"] = restores.restore_preview(
                    entry_id,
                    tier=tier,
                    user=request.user,
                    kaltura=kaltura,
                    store=store,
                    via="restore page",
                    confirmed=confirmed,
                )
    except (KalturaError, StorageError, ImproperlyConfigured) as exc:
        context["error"] = f"Could not read the live state: {exc}"
    return render(request, "archive_app/restore_new.html", context, status=400 if context["error"] else 200)


@require_POST
@permission_required(RESTORE, raise_exception=True)
def restore_create(request: HttpRequest) -> HttpResponse:
    form = RestoreForm(request.POST)
    if not form.is_valid() or not form.cleaned_data["tier"]:
        messages.error(request, "Choose an entry and a tier, preview, then confirm.")
        return redirect("restore_new")
    entry_id, tier = form.cleaned_data["entry_id"], form.cleaned_data["tier"]
    try:
        restore, created = restores.restore_request(
            entry_id=entry_id,
            tier=tier,
            source=Restore.Source.MANUAL,
            user=request.user,
            confirm_placeholder=form.cleaned_data["confirm_placeholder"],
        )
    except restores.RestoreError as exc:
        messages.error(request, str(exc))
        return redirect(f"{reverse('restore_new')}?{urlencode({'entry_id': entry_id, 'tier': tier})}")
    except (KalturaError, StorageError, ImproperlyConfigured) as exc:
        messages.error(request, f"Could not read the live state: {exc}")
        return redirect(f"{reverse('restore_new')}?{urlencode({'entry_id': entry_id})}")
    if created:
        messages.success(request, f"Restore of {entry_id} requested.")
    else:
        messages.info(request, f"A restore of {entry_id} is already under way; here it is.")
    return redirect("restore_detail", restore_id=restore.pk)


@require_GET
@permission_required(RESTORE, raise_exception=True)
def restore_detail(request: HttpRequest, restore_id: int) -> HttpResponse:
    restore = get_object_or_404(Restore.objects.select_related("requested_by"), pk=restore_id)
    events = AuditEvent.objects.filter(entry_id=restore.entry_id, created_at__gte=restore.requested_at)
    return render(
        request,
        "archive_app/restore_detail.html",
        {
            "restore": restore,
            "entry_name": Entry.objects.filter(pk=restore.entry_id).values_list("name", flat=True).first() or "",
            "events": events[:200],
            "wait": restores.expected_wait(restore.storage_class, restore.tier),
        },
    )


@require_POST
@permission_required(RESTORE, raise_exception=True)
def restore_retry(request: HttpRequest, restore_id: int) -> HttpResponse:
    restore = get_object_or_404(Restore, pk=restore_id)
    try:
        restores.restore_retry(restore, user=request.user)
    except restores.RestoreError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Restore of {restore.entry_id} queued again; it starts from the live state.")
    return redirect("restore_detail", restore_id=restore_id)


@require_POST
@permission_required(RESTORE, raise_exception=True)
def restore_cancel(request: HttpRequest, restore_id: int) -> HttpResponse:
    restore = get_object_or_404(Restore, pk=restore_id)
    try:
        restores.restore_cancel(restore, user=request.user)
    except restores.RestoreError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Restore of {restore.entry_id} cancelled; the placeholder stays.")
    return redirect("restore_detail", restore_id=restore_id)
