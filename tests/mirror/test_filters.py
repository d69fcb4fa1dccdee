"""The selection FilterSet against a plain Python computation over the same rows."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive_app.mirror.filters import MAX_IDS, SORTS, EntryFilterSet, years_ago
from archive_app.mirror.selectors import InvalidSelection, entry_list
from archive_app.models import Category, Entry
from tests.factories import save_dataset

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
MB = 1024**2
GB = 1024**3


@pytest.fixture(scope="module")
def dataset(django_db_setup, django_db_blocker):
    """300 varied entries, made once for the module and removed after it."""
    with django_db_blocker.unblock():
        save_dataset(300, seed=7, now=NOW)
        entries = list(Entry.objects.prefetch_related("categories"))
        categories = list(Category.objects.all())
        yield entries, categories
        Entry.objects.all().delete()
        Category.objects.all().delete()


@pytest.fixture
def entries(dataset, db):
    return dataset[0]


@pytest.fixture
def categories(dataset, db):
    return dataset[1]


def select(data) -> set[str]:
    return set(entry_list(data=data, now=NOW).values_list("id", flat=True))


def expected(entries, predicate, include_gone=False) -> set[str]:
    return {entry.id for entry in entries if (include_gone or not entry.gone) and predicate(entry)}


def tag_set(entry) -> set[str]:
    return {tag.strip().lower() for tag in entry.tags.split(",") if tag.strip()}


def descendants(categories, root_ids) -> set[int]:
    """Walk parent ids (not full_ids, which the filter uses) to find a subtree."""
    parent = {category.id: category.parent_id for category in categories}
    found = set()
    for category_id in parent:
        node = category_id
        while node is not None:
            if node in root_ids:
                found.add(category_id)
                break
            node = parent[node]
    return found


def in_categories(categories, *root_ids):
    subtree = descendants(categories, set(root_ids))
    return lambda entry: any(category.id in subtree for category in entry.categories.all())


def cut(years):
    return years_ago(Decimal(str(years)), NOW)


def local_day(moment):
    return timezone.localtime(moment).date()


CASES = {
    "created_before": ({"created_before_years": "3"}, lambda e, c: e.created_at < cut(3)),
    "created_within": ({"created_within_years": "1.5"}, lambda e, c: e.created_at >= cut(1.5)),
    "created_range": (
        {"created_from": "2019-01-01", "created_to": "2020-06-30"},
        lambda e, c: dt.date(2019, 1, 1) <= local_day(e.created_at) <= dt.date(2020, 6, 30),
    ),
    "created_from_only": ({"created_from": "2024-02-29"}, lambda e, c: local_day(e.created_at) >= dt.date(2024, 2, 29)),
    "unplayed": (
        {"unplayed_years": "2"},
        lambda e, c: (
            (e.last_played_at is not None and e.last_played_at < cut(2))
            or (e.last_played_at is None and e.created_at < cut(2))
        ),
    ),
    "played_within": (
        {"played_within_years": "1"},
        lambda e, c: e.last_played_at is not None and e.last_played_at >= cut(1),
    ),
    "never_played": ({"never_played": "on"}, lambda e, c: e.last_played_at is None),
    "plays_lt": ({"plays_lt": "3"}, lambda e, c: e.plays < 3),
    "category_root": ({"category": "1"}, lambda e, c: in_categories(c, 1)(e)),
    "category_prefix_trap": ({"category": "100"}, lambda e, c: in_categories(c, 100)(e)),
    "category_two": ({"category": ["12", "230"]}, lambda e, c: in_categories(c, 12, 230)(e)),
    "tag_exact": ({"tags": "archived_to_s3"}, lambda e, c: "archived_to_s3" in tag_set(e)),
    "tag_not_prefix": ({"tags": "archived"}, lambda e, c: "archived" in tag_set(e)),
    "tag_with_space_and_case": ({"tags": "LECTURE Capture"}, lambda e, c: "lecture capture" in tag_set(e)),
    "tags_all_of": (
        {"tags": "archived_to_s3, flavors_deleted"},
        lambda e, c: {"archived_to_s3", "flavors_deleted"} <= tag_set(e),
    ),
    "tags_excluded": (
        {"tags_excluded": "archived_to_s3,lecture"},
        lambda e, c: not {"archived_to_s3", "lecture"} & tag_set(e),
    ),
    "status": ({"status": ["2", "7"]}, lambda e, c: e.status in (2, 7)),
    "media_type": ({"media_type": "5"}, lambda e, c: e.media_type == 5),
    "state": ({"state": ["archived", "placeholder"]}, lambda e, c: e.archive_state in ("archived", "placeholder")),
    "original_min_mb": (
        {"original_min": "300"},
        lambda e, c: e.original_size_bytes is not None and e.original_size_bytes >= 300 * MB,
    ),
    "original_range": (
        {"original_min": "100 MB", "original_max": "0.5GB"},
        lambda e, c: e.original_size_bytes is not None and 100 * MB <= e.original_size_bytes <= GB // 2,
    ),
    "total_range": (
        {"total_min": "1 gb", "total_max": "2 GB"},
        lambda e, c: GB <= e.total_flavor_bytes <= 2 * GB,
    ),
    "include_gone": ({"include_gone": "on", "state": "initial"}, lambda e, c: e.archive_state == "initial"),
    "combo_unplayed_state_category": (
        {"unplayed_years": "2", "state": "initial", "category": "12", "tags_excluded": "zoom"},
        lambda e, c: (
            ((e.last_played_at or e.created_at) < cut(2))
            and e.archive_state == "initial"
            and in_categories(c, 12)(e)
            and "zoom" not in tag_set(e)
        ),
    ),
    "combo_old_few_plays_ready_big": (
        {"created_before_years": "3", "plays_lt": "5", "status": "2", "total_min": "100"},
        lambda e, c: e.created_at < cut(3) and e.plays < 5 and e.status == 2 and e.total_flavor_bytes >= 100 * MB,
    ),
    "combo_never_recent_video": (
        {"never_played": "on", "created_within_years": "5", "media_type": "1"},
        lambda e, c: e.last_played_at is None and e.created_at >= cut(5) and e.media_type == 1,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_filter_matches_a_direct_computation(case, entries, categories):
    data, predicate = CASES[case]
    include_gone = data.get("include_gone") == "on"
    want = expected(entries, lambda entry: predicate(entry, categories), include_gone=include_gone)
    visible = expected(entries, lambda entry: True, include_gone=include_gone)
    # A filter that selects nothing or everything would pass for the wrong reasons.
    assert 0 < len(want) < len(visible), f"{case}: the data set does not exercise this filter"
    assert select(data) == want


def test_no_filter_hides_only_gone_entries(entries):
    assert any(entry.gone for entry in entries)
    assert select({}) == {entry.id for entry in entries if not entry.gone}
    assert select({"include_gone": "on"}) == {entry.id for entry in entries}


def test_pasted_ids_in_any_layout(entries):
    chosen = [entry.id for entry in entries if not entry.gone][:5]
    gone = next(entry.id for entry in entries if entry.gone)
    text = f"{chosen[0]}, {chosen[1]}\n{chosen[2]}\t{chosen[3]};{chosen[4]}  {gone}  9_zzzzzzzz"
    assert select({"ids": text}) == set(chosen)
    assert select({"ids": text, "include_gone": "on"}) == {*chosen, gone}


def test_unplayed_and_played_within_split_the_played_entries(entries):
    played = expected(entries, lambda entry: entry.last_played_at is not None)
    unplayed = select({"unplayed_years": "2"}) & played
    recent = select({"played_within_years": "2"})
    assert unplayed and recent
    assert unplayed | recent == played and not unplayed & recent


def sort_value(field):
    """Python's idea of the order: never played / no original sorts lowest."""

    def key(entry):
        value = getattr(entry, field)
        return (value is not None, value if value is not None else 0, entry.id)

    return key


@pytest.mark.parametrize(
    "sort",
    [
        "created",
        "-created",
        "last_played",
        "-last_played",
        "plays",
        "-plays",
        "original_size",
        "-original_size",
        "total_size",
        "name",
        "-owner",
        "state",
        "-state",
        "-id",
    ],
)
def test_sorting_matches_python(sort, entries):
    """Ties are broken by id in the same direction, so each order is total and index-friendly."""
    descending = sort.startswith("-")
    visible = [entry for entry in entries if not entry.gone]
    want = sorted(visible, key=sort_value(SORTS[sort.lstrip("-")]), reverse=descending)
    got = list(entry_list(data={"sort": sort}, now=NOW).values_list("id", flat=True))
    assert got == [entry.id for entry in want]


def test_default_sort_is_newest_first(entries):
    got = list(entry_list(data={}, now=NOW)[:20])
    assert [entry.created_at for entry in got] == sorted((entry.created_at for entry in got), reverse=True)


# --- Hostile values ---------------------------------------------------------------

HOSTILE = {
    "created_before_years": ["-1", "abc", "101", str(10**30), "1e400", "NaN", "Infinity", "1.234", "0x10"],
    "created_within_years": ["-0.5", "ten", "9" * 5000],
    "unplayed_years": ["-3", "3 years", "1" + "0" * 30],
    "played_within_years": ["", "x"][1:] + ["1e3"],
    "plays_lt": ["-1", "2.5", str(2**31), "1" * 5000, "abc"],
    "created_from": ["2020-13-01", "yesterday", "0001-01-01", "9999-12-31", "2020-02-30"],
    "created_to": ["31/12/2020", "\x00"],
    "category": ["999999", str(10**30), "abc", "-1"],
    "status": ["99", "READY", "-3", "2.0"],
    "media_type": ["3", "video"],
    "state": ["deleted", "INITIAL", ""[:0] + "archived "],
    "original_min": ["-5", "5 XB", "1e3", "5 MB GB", str(10**30), "10000 TB"],
    "total_max": ["lots", "1.1234567 GB"],
    "tags": [",".join(f"t{i}" for i in range(60)), "x" * 3000, "a\x00b"],
    "ids": ["not-an-id", "1_abc", "<script>", " ".join(f"1_{i:08d}" for i in range(MAX_IDS + 1))],
    "sort": ["password", "-tags_search", "created,id", "--created"],
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(field, value, id=f"{field}-{index}")
        for field, values in HOSTILE.items()
        for index, value in enumerate(values)
    ],
)
def test_hostile_values_are_form_errors(field, value, db):
    filterset = EntryFilterSet(data={field: value}, queryset=Entry.objects.all(), now=NOW)
    assert not filterset.is_valid()
    assert field in filterset.errors
    with pytest.raises(InvalidSelection) as raised:
        entry_list(data={field: value}, now=NOW)
    assert field in raised.value.errors


@pytest.mark.parametrize(
    ("low", "high", "values"),
    [
        ("created_from", "created_to", ("2021-01-01", "2020-01-01")),
        ("original_min", "original_max", ("2 GB", "1 GB")),
        ("total_min", "total_max", ("10", "5")),
    ],
)
def test_reversed_ranges_are_errors(low, high, values, db):
    filterset = EntryFilterSet(data={low: values[0], high: values[1]}, now=NOW)
    assert not filterset.is_valid()
    assert high in filterset.errors


def test_an_invalid_selection_is_never_widened(entries):
    """Django-filter would filter by the valid fields alone; the selector refuses instead."""
    with pytest.raises(InvalidSelection):
        entry_list(data={"state": "placeholder", "unplayed_years": "-1"}, now=NOW)


def test_years_ago_uses_calendar_years():
    leap_day = dt.datetime(2024, 2, 29, 10, tzinfo=dt.UTC)
    assert years_ago(1, leap_day) == dt.datetime(2023, 2, 28, 10, tzinfo=dt.UTC)
    assert years_ago(Decimal("2"), NOW) == dt.datetime(2024, 6, 15, 12, tzinfo=dt.UTC)
    assert years_ago(Decimal("0.5"), NOW) == NOW - dt.timedelta(days=365.2425 / 2)


FIELDS = list(EntryFilterSet.base_filters)
values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "1", "2.5", "archived", "READY", "1_abcd1234", "2 GB", "-", "on", "2020-01-01"]),
)
form_data = st.dictionaries(
    st.sampled_from(FIELDS), st.one_of(values, st.lists(values, max_size=3)), max_size=len(FIELDS)
)


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=form_data)
def test_any_input_is_either_a_selection_or_form_errors(data):
    filterset = EntryFilterSet(data=data, queryset=Entry.objects.all(), now=NOW)
    if filterset.is_valid():
        filterset.qs.count()  # runs the query: no database error either
    else:
        assert set(filterset.errors) <= set(FIELDS) | {"__all__"}


def test_random_combinations_match_python(entries, categories):
    """Random mixes of a few filters, each checked against the same predicates as above."""
    rng = random.Random(3)
    names = [name for name in CASES if not name.startswith("combo") and name != "include_gone"]
    checked = 0
    for _ in range(25):
        chosen = rng.sample(names, 2)
        data = {}
        for name in chosen:
            data.update(CASES[name][0])
        if len(data) != sum(len(CASES[name][0]) for name in chosen):
            continue  # two cases set the same field
        want = expected(entries, lambda entry, chosen=chosen: all(CASES[n][1](entry, categories) for n in chosen))
        assert select(data) == want, chosen
        checked += 1
    assert checked >= 15


@pytest.mark.django_db
def test_search_finds_words_of_the_name_description_or_owner_and_the_start_of_an_id():
    from archive_app.mirror import selectors
    from tests.factories import make_entry

    make_entry("1_alpha001", name="Quantum Chromodynamics", description="gluons", owner_id="prof-quark")
    make_entry("1_alpha002", name="Organic chemistry", description="benzene rings, 100% carbon")
    make_entry("1_beta0003", name="Cell biology", owner_id="dr_cells")

    def found(q: str) -> set[str]:
        return set(selectors.entry_list(data={"q": q}).values_list("id", flat=True))

    assert found("chromo") == found("GLUONS") == found("quark") == {"1_alpha001"}
    assert found("1_alpha") == {"1_alpha001", "1_alpha002"}
    assert found("alpha") == set()  # an id matches by its start only
    assert found("quantum gluons") == {"1_alpha001"} and found("quantum benzene") == set()  # every word
    assert found("100%") == {"1_alpha002"} and found("%") == {"1_alpha002"}  # LIKE's wildcards are plain text
    assert found("dr_") == {"1_beta0003"}
    with pytest.raises(selectors.InvalidSelection, match="at most 10 words"):
        found(" ".join(["word"] * 11))
