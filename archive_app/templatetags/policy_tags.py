"""The owner-notice panel on a batch page, drawn from its own query so the batch view stays as it is."""

from __future__ import annotations

from django import template

from archive_app.models import BatchItem, BatchNotice, OwnerNotice

register = template.Library()


@register.inclusion_tag("archive_app/_batch_notices.html")
def batch_notices(batch) -> dict:
    from archive_app.scheduling.notices import KEPT_REASON

    notice = BatchNotice.objects.filter(batch=batch).select_related("policy").first()
    if notice is None:
        return {"notice": None}
    owner_notices = list(OwnerNotice.objects.filter(batch=batch))
    counts: dict[str, int] = {}
    for owner_notice in owner_notices:
        counts[owner_notice.status] = counts.get(owner_notice.status, 0) + 1
    return {
        "notice": notice,
        "batch": batch,
        "owner_notices": owner_notices,
        "counts": counts,
        "problems": [n for n in owner_notices if n.status not in (OwnerNotice.Status.SENT, OwnerNotice.Status.PENDING)],
        "kept": BatchItem.objects.filter(batch=batch, skip_reason=KEPT_REASON).count(),
    }
