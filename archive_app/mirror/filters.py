"""Which entries: the one definition shared by the browse page, the export and the commands.

Every value arrives as text (a URL's query string or a command-line option) and is
validated by the form fields here, so a hostile value becomes a form error naming the
field, never an exception. The GET parameter names are the form field names below;
`archive_app.cli` maps its options onto them.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import django_filters
from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connections
from django.db.models import F, Func, Q
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThanOrEqual, In, IsNull, LessThan, LessThanOrEqual
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from django.utils.functional import cached_property

from archive_app.models import ArchiveState, AuditEvent, Category, Entry, EntryStatus, MediaType

MAX_YEARS = 100
MAX_IDS = 10_000
MAX_TAGS = 50
# Kaltura entry ids look like "1_abcd1234"; accept a little more so an odd partner
# prefix or length is not refused, while catching pasted names and URLs.
ENTRY_ID_RE = re.compile(r"^\d{1,3}_[A-Za-z0-9]{4,20}$")
# Sizes use the same 1024-based units as the sizes shown on the page (filesizeformat).
SIZE_UNITS = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
}
SIZE_RE = re.compile(r"^(\d{1,15}(?:\.\d{1,6})?)\s*([a-z]*)$", re.IGNORECASE)
MAX_SIZE_BYTES = 1024**5  # 1 PB: far above any video, far below BigIntegerField's limit

# Sort parameter value -> model field. Only these orderings exist; anything else is a
# form error. "id" is always appended so pages never overlap.
SORTS = {
    "id": "id",
    "name": "name",
    "owner": "owner_id",
    "created": "created_at",
    "last_played": "last_played_at",
    "plays": "plays",
    "original_size": "original_size_bytes",
    "total_size": "total_flavor_bytes",
    "state": "archive_state",
}
DEFAULT_SORT = "-created"
# Far wider than Kaltura's lifetime, and far enough from year 1 and 9999 that
# converting a day to an aware datetime in any time zone cannot overflow.
DATE_VALIDATORS = [MinValueValidator(dt.date(1900, 1, 1)), MaxValueValidator(dt.date(2999, 12, 31))]
NULLABLE_SORTS = {"last_played_at", "original_size_bytes"}
SORT_CHOICES = [(key, key) for name in SORTS for key in (name, f"-{name}")]


def years_ago(years: Decimal | int | float, now: dt.datetime) -> dt.datetime:
    """The moment `years` years before `now`: calendar years, then the fraction as days."""
    years = Decimal(years)
    whole = int(years)
    try:
        then = now.replace(year=now.year - whole)
    except ValueError:  # 29 February in a year without one
        then = now.replace(year=now.year - whole, day=28)
    return then - dt.timedelta(days=float(years - whole) * 365.2425)


# Kaltura counts no play before an entry exists, but lastPlayedAt comes from a daily analytics job, rounded
# to the day: it can read up to a day before createdAt. Two days cover that in any time zone.
PLAY_BEFORE_CREATION_AT_MOST = dt.timedelta(days=2)


def unplayed_since(cutoff: dt.datetime, *, created=None) -> Q:
    """Not played since `cutoff`; a never-played entry counts only if it existed before then.

    One comparison rather than an OR of two: SQLite would otherwise visit two indexes and
    then every matching row, instead of reading the browse index (see 0004_browse_indexes).
    The second test, created before cutoff + PLAY_BEFORE_CREATION_AT_MOST, holds for every entry the
    first selects unless its last play is recorded more than two days before its creation, which
    Kaltura does not record; it tells PostgreSQL that the newest entries cannot match, so the
    newest-first page walks back from the cutoff instead of through every entry created since (a
    second at 1,000,000 entries). `created` is the filters' form of the column (FilterSet.column).
    """
    created = F("created_at") if created is None else created
    return Q(LessThan(Coalesce(F("last_played_at"), F("created_at")), cutoff)) & Q(
        LessThan(created, cutoff + PLAY_BEFORE_CREATION_AT_MOST)
    )


def start_of_day(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def split_tag_text(text: str) -> list[str]:
    """Tags typed as "a, b c, d": commas separate, because Kaltura tags may contain spaces."""
    return [tag.strip().lower() for tag in text.split(",") if tag.strip()]


# --- Form fields ------------------------------------------------------------------


class YearsField(forms.DecimalField):
    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", MAX_YEARS)
        kwargs.setdefault("max_digits", 5)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("widget", forms.NumberInput(attrs={"step": "any", "min": 0, "max": MAX_YEARS}))
        super().__init__(**kwargs)


class SizeField(forms.CharField):
    """A size like "500 MB", "1.5 GB" or "2TB"; a bare number is megabytes. Cleans to bytes."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 40)
        kwargs.setdefault("help_text", "e.g. 500 MB or 2 GB; a bare number is MB")
        super().__init__(**kwargs)

    def clean(self, value):
        text = super().clean(value)  # as text first: length and NUL checks
        if text in self.empty_values:
            return None
        match = SIZE_RE.match(text.strip())
        unit = match.group(2).lower() if match else ""
        if not match or (unit and unit not in SIZE_UNITS):
            raise forms.ValidationError("Enter a size such as 500 MB, 1.5 GB or 2 TB.", code="invalid")
        size = int(Decimal(match.group(1)) * SIZE_UNITS[unit or "mb"])
        if size > MAX_SIZE_BYTES:
            raise forms.ValidationError("Enter a size of at most 1024 TB.", code="max_value")
        return size


class TagsField(forms.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 2000)
        kwargs.setdefault("help_text", "exact tags, separated by commas")
        super().__init__(**kwargs)

    def clean(self, value):
        text = super().clean(value)
        tags = split_tag_text(text or "")
        if len(tags) > MAX_TAGS:
            raise forms.ValidationError(f"Enter at most {MAX_TAGS} tags.", code="too_many")
        return tags


class EntryIdsField(forms.CharField):
    """Entry ids pasted from anywhere: split on whitespace, commas and semicolons."""

    widget = forms.Textarea(attrs={"rows": 3})

    def __init__(self, **kwargs):
        # Room for MAX_IDS ids with separators, so the count check below is the one that speaks.
        kwargs.setdefault("max_length", MAX_IDS * 40)
        kwargs.setdefault("help_text", f"one or more entry ids (up to {MAX_IDS:,}), separated by spaces or commas")
        super().__init__(**kwargs)

    def clean(self, value):
        text = super().clean(value)
        ids = list(dict.fromkeys(part for part in re.split(r"[\s,;]+", text or "") if part))
        if len(ids) > MAX_IDS:
            raise forms.ValidationError(f"Enter at most {MAX_IDS:,} entry ids (got {len(ids):,}).", code="too_many")
        bad = [entry_id for entry_id in ids if not ENTRY_ID_RE.match(entry_id)]
        if bad:
            shown = ", ".join(repr(entry_id[:40]) for entry_id in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise forms.ValidationError(f"Not an entry id (like 1_abcd1234): {shown}{more}.", code="invalid_id")
        return ids


# Parameters of the browse page's address that are about the page, not the selection.
PAGE_PARAMETERS = {"page"}
# What a selection is about; a policy needs at least one (anything else selects the whole library).
CRITERIA = (
    "created_before_years",
    "created_within_years",
    "created_from",
    "created_to",
    "unplayed_years",
    "played_within_years",
    "never_played",
    "plays_lt",
    "category",
    "tags",
    "ids",
)


class EntryFilterForm(forms.Form):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.CheckboxSelectMultiple):
                continue
            if isinstance(widget, forms.CheckboxInput):
                widget.attrs.setdefault("class", "form-check-input")
            elif isinstance(widget, forms.Select):
                widget.attrs.setdefault("class", "form-select form-select-sm")
            else:
                widget.attrs.setdefault("class", "form-control form-control-sm")

    def clean(self):
        cleaned = super().clean()
        for low, high in (("created_from", "created_to"), ("original_min", "original_max"), ("total_min", "total_max")):
            if cleaned.get(low) is not None and cleaned.get(high) is not None and cleaned[low] > cleaned[high]:
                self.add_error(high, f"Must not be below {self.fields[low].label.lower()}.")
        # A misspelt field would otherwise be ignored, and the selection be wider than meant.
        known = {self.add_prefix(name) for name in self.fields}
        own = f"{self.prefix}-" if self.prefix else ""
        unknown = sorted(
            key for key in self.data if key.startswith(own) and key not in known and key not in PAGE_PARAMETERS
        )
        if unknown:
            shown = ", ".join(repr(key[len(own) :][:40]) for key in unknown[:5])
            raise forms.ValidationError(f"Not a filter (a typo?): {shown}.", code="unknown_field")
        return cleaned

    def has_criterion(self) -> bool:
        """Whether the cleaned filter narrows by age, plays, category, tag or ids."""
        return any(self.cleaned_data.get(name) not in (None, "", [], False) for name in CRITERIA)


class YearsFilter(django_filters.Filter):
    field_class = YearsField


class SizeFilter(django_filters.Filter):
    field_class = SizeField


class TagsFilter(django_filters.Filter):
    field_class = TagsField


class EntryIdsFilter(django_filters.Filter):
    field_class = EntryIdsField


class IntegerFilter(django_filters.Filter):
    field_class = forms.IntegerField


class CheckboxFilter(django_filters.Filter):
    """A checkbox: ticked means "apply"; unticked means no filtering (not "the opposite")."""

    field_class = forms.BooleanField


# --- The FilterSet ----------------------------------------------------------------


MAX_SEARCH_WORDS = 10


class SearchField(forms.CharField):
    """Words to look for; each must appear in the name, description or owner, or start the id."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 200)
        kwargs.setdefault("help_text", "words of the name, description or owner, or the start of an id")
        super().__init__(**kwargs)

    def clean(self, value):
        words = (super().clean(value) or "").split()
        if len(words) > MAX_SEARCH_WORDS:
            raise forms.ValidationError(f"Enter at most {MAX_SEARCH_WORDS} words.", code="too_many")
        return words


class SearchFilter(django_filters.Filter):
    field_class = SearchField


class EntryFilterSet(django_filters.FilterSet):
    q = SearchFilter(method="filter_search", label="Search")
    created_before_years = YearsFilter(method="filter_created_before_years", label="Created more than (years ago)")
    created_within_years = YearsFilter(method="filter_created_within_years", label="Created within (years)")
    created_from = django_filters.DateFilter(
        method="filter_created_from",
        label="Created from",
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=DATE_VALIDATORS,
    )
    created_to = django_filters.DateFilter(
        method="filter_created_to",
        label="Created to",
        widget=forms.DateInput(attrs={"type": "date"}),
        validators=DATE_VALIDATORS,
    )
    unplayed_years = YearsFilter(
        method="filter_unplayed_years",
        label="Not played for (years)",
        help_text="never-played entries count when created before then",
    )
    played_within_years = YearsFilter(method="filter_played_within_years", label="Played within (years)")
    never_played = CheckboxFilter(method="filter_never_played", label="Never played")
    plays_lt = IntegerFilter(
        method="filter_plays_lt",
        label="Plays below",
        min_value=0,
        max_value=2**31 - 1,
    )
    category = django_filters.MultipleChoiceFilter(
        method="filter_category",
        label="Category",
        help_text="includes its sub-categories",
        error_messages={"invalid_choice": "There is no category with id %(value)s."},
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    tags = TagsFilter(method="filter_tags", label="Has all tags")
    tags_excluded = TagsFilter(method="filter_tags_excluded", label="Has none of the tags")
    status = django_filters.TypedMultipleChoiceFilter(
        method="filter_status",
        label="Status",
        choices=EntryStatus.choices,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
    )
    media_type = django_filters.TypedMultipleChoiceFilter(
        method="filter_media_type",
        label="Media type",
        choices=MediaType.choices,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
    )
    state = django_filters.MultipleChoiceFilter(
        method="filter_state",
        label="Archive state",
        choices=ArchiveState.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    original_min = SizeFilter(method="filter_at_least", field_name="original_size_bytes", label="Original at least")
    original_max = SizeFilter(method="filter_at_most", field_name="original_size_bytes", label="Original at most")
    total_min = SizeFilter(method="filter_at_least", field_name="total_flavor_bytes", label="All flavors at least")
    total_max = SizeFilter(method="filter_at_most", field_name="total_flavor_bytes", label="All flavors at most")
    ids = EntryIdsFilter(method="filter_ids", label="Entry ids")
    include_gone = CheckboxFilter(method="filter_include_gone", label="Include entries gone from Kaltura")
    sort = django_filters.ChoiceFilter(
        method="filter_sort", label="Sort", choices=SORT_CHOICES, widget=forms.HiddenInput
    )

    class Meta:
        model = Entry
        fields: list[str] = []
        form = EntryFilterForm

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None, now: dt.datetime | None = None):
        """`data` is a QueryDict (a request's GET) or a plain dict of text or lists of text."""
        if data is not None and not isinstance(data, MultiValueDict):
            # As in a query string: a list gives several values, a field that takes one uses the last.
            data = MultiValueDict(
                {key: list(value) if isinstance(value, list | tuple) else [value] for key, value in data.items()}
            )
        super().__init__(data, queryset, request=request, prefix=prefix)
        # One clock for every cutoff in this selection, so "within 2 years" and
        # "not played for 2 years" meet exactly.
        self.now = now or timezone.now()
        category = self.filters["category"]
        # Choices are read when the form is drawn or a category is chosen, so checking
        # other values (a command's arguments, say) needs no database.
        category.extra["choices"] = lambda: [(pk, full_name) for pk, (_, full_name, _) in self.categories.items()]
        category.__dict__.pop("_field", None)  # a form field built earlier would keep old choices

    @cached_property
    def categories(self) -> dict[str, tuple[str, str, str]]:
        """Category id (as text) -> (full_ids, full_name, name), by full name."""
        return {
            str(pk): (full_ids, full_name, name)
            for pk, full_ids, full_name, name in Category.objects.order_by("full_name").values_list(
                "id", "full_ids", "full_name", "name"
            )
        }

    def filter_queryset(self, queryset):
        # "gone" entries are hidden unless asked for, also when the form leaves the field out.
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_gone"):
            queryset = queryset.filter(gone=False)
        if not self.form.cleaned_data.get("sort"):
            queryset = self.filter_sort(queryset, "sort", DEFAULT_SORT)
        return queryset

    # The methods below receive cleaned values; empty values never reach them.

    def column(self, name: str):
        """A column to filter on, kept out of SQLite's choice of index.

        SQLite keeps no statistics on how values spread, so it takes any index on a filtered
        column, then fetches every matching row, even when most rows match (plays < 5:
        85,000 lookups). A unary + (SQLite's documented way to say "not this index") leaves
        the totals to the browse index and the page to the sort index. PostgreSQL plans from
        statistics and gets the plain column.
        """
        if connections[self.queryset.db].vendor == "sqlite":
            return Func(F(name), template="+%(expressions)s")
        return F(name)

    def filter_created_before_years(self, queryset, name, value):
        return queryset.filter(LessThan(self.column("created_at"), years_ago(value, self.now)))

    def filter_created_within_years(self, queryset, name, value):
        return queryset.filter(GreaterThanOrEqual(self.column("created_at"), years_ago(value, self.now)))

    def filter_created_from(self, queryset, name, value):
        return queryset.filter(GreaterThanOrEqual(self.column("created_at"), start_of_day(value)))

    def filter_created_to(self, queryset, name, value):
        next_day = start_of_day(value + dt.timedelta(days=1))
        return queryset.filter(LessThan(self.column("created_at"), next_day))

    def filter_unplayed_years(self, queryset, name, value):
        return queryset.filter(unplayed_since(years_ago(value, self.now), created=self.column("created_at")))

    def filter_played_within_years(self, queryset, name, value):
        return queryset.filter(GreaterThanOrEqual(self.column("last_played_at"), years_ago(value, self.now)))

    def filter_never_played(self, queryset, name, value):
        return queryset.filter(IsNull(self.column("last_played_at"), True)) if value else queryset

    def filter_plays_lt(self, queryset, name, value):
        return queryset.filter(LessThan(self.column("plays"), value))

    def filter_category(self, queryset, name, value):
        # Entry.category_search holds every id on the paths of an entry's categories, so an
        # entry of a sub-category carries the chosen id too ("1" never matches ",12,": commas).
        matches = Q()
        for pk in value:
            matches |= Q(category_search__contains=f",{int(pk)},")
        return queryset.filter(matches)

    def filter_tags(self, queryset, name, value):
        for tag in value:
            queryset = queryset.filter(tags_search__contains=f",{tag},")
        return queryset

    def filter_tags_excluded(self, queryset, name, value):
        for tag in value:
            queryset = queryset.exclude(tags_search__contains=f",{tag},")
        return queryset

    def filter_status(self, queryset, name, value):
        return queryset.filter(In(self.column("status"), value))

    def filter_media_type(self, queryset, name, value):
        return queryset.filter(In(self.column("media_type"), value))

    def filter_state(self, queryset, name, value):
        return queryset.filter(In(self.column("archive_state"), value))

    # For method filters django-filter passes the filter's field_name as `name`.

    def filter_at_least(self, queryset, name, value):
        return queryset.filter(GreaterThanOrEqual(self.column(name), value))

    def filter_at_most(self, queryset, name, value):
        return queryset.filter(LessThanOrEqual(self.column(name), value))

    def filter_search(self, queryset, name, value):
        # A plain substring test: PostgreSQL answers it from the trigram indexes of
        # 0013_ui_select_search; SQLite scans, which only a search pays for.
        for word in value:
            queryset = queryset.filter(
                Q(name__icontains=word)
                | Q(description__icontains=word)
                | Q(owner_id__icontains=word)
                | Q(id__startswith=word)
            )
        return queryset

    def filter_ids(self, queryset, name, value):
        return queryset.filter(pk__in=value)

    def filter_include_gone(self, queryset, name, value):
        return queryset  # applied in filter_queryset, which also sees an absent field

    def filter_sort(self, queryset, name, value):
        descending = value.startswith("-")
        name = SORTS[value.lstrip("-")]
        if name in NULLABLE_SORTS:
            # Never played sorts as the oldest play (no original as the smallest) in both
            # databases, whose defaults for NULL differ.
            order = F(name).desc(nulls_last=True) if descending else F(name).asc(nulls_first=True)
        else:
            order = F(name).desc() if descending else F(name).asc()
        # Ties go by id in the same direction, so one (column, id) index serves both directions.
        return queryset.order_by(order, F("id").desc() if descending else F("id").asc())


# --- The audit log ------------------------------------------------------------------


ACTION_RE = re.compile(r"^[a-z0-9_]+$")


class AuditFilterForm(forms.Form):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            css = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
            field.widget.attrs.setdefault("class", f"{css} {css}-sm")

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since is not None and until is not None and since > until:
            self.add_error("until", "Must not be before the start date.")
        return cleaned


class AuditEventFilterSet(django_filters.FilterSet):
    """Which audit events: every field is optional; a value that is not valid is a form error."""

    user = django_filters.CharFilter(field_name="username", label="User", max_length=150)  # as Django: exact
    # Text checked by its form, not a choice among the recorded actions: listing those is a DISTINCT
    # over the whole log (the page offers them as suggestions, from audit_views.recorded_actions).
    action = django_filters.CharFilter(
        label="Action",
        max_length=50,
        validators=[RegexValidator(ACTION_RE, "An action is lower-case letters, digits and _.")],
        widget=forms.TextInput(attrs={"list": "audit-actions", "autocomplete": "off"}),
    )
    entry = django_filters.CharFilter(
        field_name="entry_id",
        label="Entry id",
        max_length=40,
        validators=[RegexValidator(ENTRY_ID_RE, "Not an entry id (like 1_abcd1234).")],
    )
    batch = IntegerFilter(field_name="batch_id", label="Batch", min_value=1, max_value=2**63 - 1)
    since = django_filters.DateFilter(
        method="filter_since", label="From", widget=forms.DateInput(attrs={"type": "date"}), validators=DATE_VALIDATORS
    )
    until = django_filters.DateFilter(
        method="filter_until", label="To", widget=forms.DateInput(attrs={"type": "date"}), validators=DATE_VALIDATORS
    )
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices, label="Outcome", empty_label="any")
    mode = django_filters.ChoiceFilter(
        method="filter_mode", choices=[("real", "real"), ("dry_run", "dry run")], label="Mode", empty_label="any"
    )

    class Meta:
        model = AuditEvent
        fields: list[str] = []
        form = AuditFilterForm

    def filter_since(self, queryset, name, value):
        return queryset.filter(created_at__gte=start_of_day(value))

    def filter_until(self, queryset, name, value):
        return queryset.filter(created_at__lt=start_of_day(value + dt.timedelta(days=1)))

    def filter_mode(self, queryset, name, value):
        return queryset.filter(dry_run=value == "dry_run")


def describe_filter(query: str) -> list[tuple[str, str]]:
    """(label, values) for each field of a browse query string, in words: "Not played for (years)", "3"."""
    from django.http import QueryDict

    described = []
    for key, values in QueryDict(query).lists():
        field = EntryFilterSet.base_filters.get(key)
        label = str(field.label) if field is not None and field.label else key
        described.append((label, ", ".join(values)))
    return described
