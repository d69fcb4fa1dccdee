"""Plain words for what the code calls by name: the one place a step's label is written.

Pages show these wherever steps appear (previews, batch items, restores, the entry's history and
the audit log). The plans in workflow.py and restores.py keep their names; an unknown name reads
as its words ("new_step" -> "New step"), so a step added there shows before it gets a label here.
"""

from __future__ import annotations

from django.template.defaultfilters import filesizeformat

STEP_LABELS = {
    # archive and replace (workflow.py)
    "copy": "Copy original to S3",
    "adopt": "Record the copy already in S3",
    "verify": "Check the copy (size and SHA-256)",
    "tag_archived": "Tag it archived",
    "upload_placeholder": "Upload the placeholder",
    "replace_content": "Swap in the placeholder",
    "wait_replacement": "Wait for Kaltura to convert the placeholder",
    "thumbnail": "Set the placeholder's thumbnail",
    "tag_replaced": "Tag it replaced",
    "adopt_hash": "Hash the old tool's copy in S3 and record it",
    # restore (restores.py)
    "s3_restore": "Ask S3 to bring the copy out of Glacier",
    "s3_wait": "Wait for S3 to make the copy readable",
    "upload_original": "Upload the original back to Kaltura",
    "restore_content": "Swap the original back in",
    "wait_conversion": "Wait for Kaltura to convert the original",
    "restore_captions": "Put back the captions Kaltura lost",
    "untag_replaced": "Remove the replaced tag",
}
# Steps whose label carries a size, and which of the plan's sizes it is.
SIZED_STEPS = {"copy": "copy", "upload_original": "copy", "tag_replaced": "freed"}
# Other recorded actions (audit events) that read better than their names.
ACTION_LABELS = {
    "preview_archive": "Preview: archive",
    "preview_replace": "Preview: replace",
    "preview_archive_replace": "Preview: archive and replace",
    "batch_create": "Batch made",
    "batch_approve": "Batch approved",
    "batch_cancel": "Batch cancelled",
    "batch_retry": "Failed entries retried",
    "restore_done": "Restore finished",
    "restore_failed": "Restore failed",
}


def readable(name: str) -> str:
    """ "tag_archived" -> "Tag archived": the fallback for a name without a label."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else name


def step_label(name: str, *, copy_bytes: int | None = None, freed_bytes: int | None = None) -> str:
    """ "Copy original to S3 (1.2 GB)": the step's label, with its size when the step has one."""
    label = STEP_LABELS.get(name) or readable(name)
    size = {"copy": copy_bytes, "freed": freed_bytes}.get(SIZED_STEPS.get(name, ""))
    if size:
        label += f" ({filesizeformat(size)}{' freed' if SIZED_STEPS[name] == 'freed' else ''})"
    return label


def plan_labels(step_names: list[str], *, copy_bytes: int = 0, freed_bytes: int = 0) -> list[str]:
    return [step_label(name, copy_bytes=copy_bytes, freed_bytes=freed_bytes) for name in step_names]


def action_label(action: str) -> str:
    """An audit event's action in plain words: a step's label, a known action's, or its words."""
    return STEP_LABELS.get(action) or ACTION_LABELS.get(action) or readable(action)
