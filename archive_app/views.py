from __future__ import annotations

from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from archive_app.models import ArchiveState, Entry


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    by_state = {
        row["archive_state"]: row
        for row in Entry.objects.filter(gone=False)
        .values("archive_state")
        .annotate(entries=Count("id"), bytes=Sum("total_flavor_bytes"))
    }
    states = [
        {
            "state": state,
            "label": label,
            "entries": by_state.get(state, {}).get("entries", 0),
            "bytes": by_state.get(state, {}).get("bytes") or 0,
        }
        for state, label in ArchiveState.choices
    ]
    return render(request, "archive_app/home.html", {"states": states})
