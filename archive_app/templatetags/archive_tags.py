"""Template helpers for the dashboard: money, and bar charts drawn as inline SVG (no JS library)."""

from __future__ import annotations

from django import forms, template
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def personal(value, user):
    """E-mail and IP addresses as the user may see them: archive admins in full, others masked."""
    from archive_app.lib.privacy import masked_for

    return masked_for(user, value)


CHART_WIDTH = 600
CHART_HEIGHT = 200
LABEL_SPACE = 24  # below the bars, for the year labels
TOP_SPACE = 8
AXIS_SPACE = 64  # left of the bars, for the bytes axis's values
CHECKED = mark_safe(" checked")
SELECTED = mark_safe(" selected")
NUMBER_ATTRS = mark_safe(' step="any" min="0"')


@register.filter
def usd(value) -> str:
    """-1234.5 -> "-$1,234.50"."""
    if value in (None, ""):
        return ""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def byte_ticks(largest: int, most: int = 5) -> list[int]:
    """Round values for a bytes axis, from 0 to at least `largest`: steps of 1, 2 or 5 (times a power of ten)
    of the largest binary unit that fits, as filesizeformat shows them ("500.0 MB", "1.0 GB")."""
    unit = 1
    while unit * 1024 <= largest:
        unit *= 1024
    step = unit
    for multiple in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        step = multiple * unit
        if largest <= step * (most - 1):
            break
    count = max(1, -(-largest // step))
    return [step * index for index in range(count + 1)]


@register.inclusion_tag("archive_app/_bar_chart.html")
def bar_chart(bars: list[dict], title: str, chart_id: str, x_label: str = "Year") -> dict:
    """Bars of `bytes` with a `label` each, against a bytes axis with round values; every bar carries a
    <title>, and the same figures follow as a table."""
    count = max(1, len(bars))
    plot_width = CHART_WIDTH - AXIS_SPACE
    slot = plot_width / count
    plot_height = CHART_HEIGHT - LABEL_SPACE - TOP_SPACE
    ticks = byte_ticks(max((bar["bytes"] for bar in bars), default=0) or 1)
    top = ticks[-1]
    drawn = []
    for index, bar in enumerate(bars):
        height = plot_height * bar["bytes"] / top
        if bar["bytes"]:
            height = max(height, 1)  # a non-zero year stays visible
        drawn.append(
            {
                **bar,
                "x": round(AXIS_SPACE + index * slot + slot * 0.1, 1),
                "width": round(slot * 0.8, 1),
                "y": round(TOP_SPACE + plot_height - height, 1),
                "height": round(height, 1),
                "label_x": round(AXIS_SPACE + index * slot + slot / 2, 1),
                "tooltip": f"{bar['label']}: {filesizeformat(bar['bytes'])} in {bar['entries']:,} entries",
            }
        )
    return {
        "bars": drawn,
        "title": title,
        "chart_id": chart_id,
        "x_label": x_label,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "plot_left": AXIS_SPACE,
        "label_y": CHART_HEIGHT - LABEL_SPACE + 14,
        "axis_y": CHART_HEIGHT - LABEL_SPACE,
        "ticks": [
            {"label": filesizeformat(value), "y": round(TOP_SPACE + plot_height - plot_height * value / top, 1)}
            for value in ticks
        ],
        "small_labels": len(bars) > 16,
    }


@register.simple_tag
def filter_field(field) -> str:
    """One filter of the browse form: label, control, errors and help, in Bootstrap markup.

    Built here rather than in an included template with Django's widget templates: the
    twenty filters took a third of the page's time that way (a template per option, too).
    """
    widget = field.field.widget
    name, control_id, label = field.html_name, field.auto_id, field.label
    value = field.value()
    if field.is_hidden:
        return format_html('<input type="hidden" name="{}" value="{}">', name, value or "")
    if isinstance(widget, forms.CheckboxInput):
        control = format_html(
            '<div class="form-check"><input class="form-check-input" type="checkbox" name="{}" id="{}"{}>'
            '<label class="form-check-label" for="{}">{}</label></div>',
            name,
            control_id,
            CHECKED if value else "",
            control_id,
            label,
        )
    elif isinstance(widget, forms.CheckboxSelectMultiple):
        boxes = format_html_join(
            "",
            '<div class="form-check"><input class="form-check-input" type="checkbox" name="{}" value="{}" id="{}_{}"{}>'
            '<label class="form-check-label small" for="{}_{}">{}</label></div>',
            (
                (name, choice, control_id, index, CHECKED if chosen else "", control_id, index, choice_label)
                for index, (choice, choice_label, chosen) in enumerate(options(field))
            ),
        )
        control = format_html(
            '<fieldset><legend class="form-label small mb-1">{}</legend><div class="checkbox-list">{}</div></fieldset>',
            label,
            boxes,
        )
    else:
        if isinstance(widget, forms.SelectMultiple):
            choices = format_html_join(
                "",
                '<option value="{}"{}>{}</option>',
                ((choice, SELECTED if chosen else "", choice_label) for choice, choice_label, chosen in options(field)),
            )
            element = format_html(
                '<select name="{}" id="{}" class="form-select form-select-sm" size="6" multiple>{}</select>',
                name,
                control_id,
                choices,
            )
        elif isinstance(widget, forms.Textarea):
            element = format_html(
                '<textarea name="{}" id="{}" rows="3" class="form-control form-control-sm">{}</textarea>',
                name,
                control_id,
                value or "",
            )
        else:
            input_type = widget.attrs.get("type", widget.input_type)
            extra = NUMBER_ATTRS if input_type == "number" else ""
            element = format_html(
                '<input type="{}" name="{}" id="{}" value="{}" class="form-control form-control-sm"{}>',
                input_type,
                name,
                control_id,
                "" if value is None else value,
                extra,
            )
        control = format_html('<label class="form-label small mb-1" for="{}">{}</label>{}', control_id, label, element)
    errors = format_html_join(
        "", '<div class="invalid-feedback d-block">{}</div>', ((error,) for error in field.errors)
    )
    help_text = format_html('<div class="form-text">{}</div>', field.help_text) if field.help_text else ""
    return format_html('<div class="mb-2">{}{}{}</div>', control, errors, help_text)


@register.filter
def options(bound_field) -> list[tuple[str, str, bool]]:
    """(value, label, chosen) for a multiple-choice field: the same markup as Django's widgets,
    without rendering a template per option (40 categories took ~7 ms that way)."""
    chosen = {str(value) for value in bound_field.value() or []}
    return [(str(value), label, str(value) in chosen) for value, label in bound_field.field.choices]


@register.filter
def plan_labels(item) -> list[str]:
    """A batch item's planned steps in plain words, with its sizes (wording.py)."""
    from archive_app.web import wording

    return wording.plan_labels(item.planned_steps, copy_bytes=item.bytes_to_copy, freed_bytes=item.bytes_freed)


@register.filter
def action_label(action: str) -> str:
    from archive_app.web import wording

    return wording.action_label(action)


@register.filter
def step_label(name: str, size=None) -> str:
    """A step's plain label; `size` is the bytes it moves (a copy or an upload)."""
    from archive_app.web import wording

    return wording.step_label(name, copy_bytes=size or None)
