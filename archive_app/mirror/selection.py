"""The librarian's selection of entries on the Entries page, kept in the session across pages.

Two shapes, so "select all N matching" costs the same for fifty entries or fifty thousand:
- explicit ids (rows checked one by one, at most filters.MAX_IDS), or
- every entry a filter selects, less the rows unchecked since (`excluded`).
The filter is stored as it was when "select all" was pressed: changing the page's filter
afterwards does not change what is selected.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import QueryDict

from archive_app.mirror import selectors
from archive_app.mirror.filters import ENTRY_ID_RE, MAX_IDS
from archive_app.models import Entry

SESSION_KEY = "entry_selection"


def _ids(values) -> list[str]:
    """Entry ids from a request (each value one id, or several separated by spaces), in order; anything
    that is not an id is dropped."""
    ids = (part for value in values for part in value.split()[: MAX_IDS + 1])
    return list(dict.fromkeys(part for part in ids if ENTRY_ID_RE.match(part)))[:MAX_IDS]


class Selection:
    def __init__(self, session):
        self.session = session
        stored = session.get(SESSION_KEY) or {}
        self.filter_query: str | None = stored.get("filter")
        self.ids: list[str] = list(stored.get("ids", []))
        self.excluded: list[str] = list(stored.get("excluded", []))

    @property
    def is_filter(self) -> bool:
        return self.filter_query is not None

    @property
    def empty(self) -> bool:
        return not self.is_filter and not self.ids

    def _save(self) -> None:
        if self.empty:
            self.session.pop(SESSION_KEY, None)
        elif self.is_filter:
            self.session[SESSION_KEY] = {"filter": self.filter_query, "excluded": self.excluded}
        else:
            self.session[SESSION_KEY] = {"ids": self.ids}

    def select_all(self, filter_query: str) -> None:
        """Every entry the filter selects; raises selectors.InvalidSelection for a filter that is not valid."""
        selectors.entry_list(data=QueryDict(filter_query))
        self.filter_query, self.ids, self.excluded = filter_query, [], []
        self._save()

    def update_page(self, *, shown: list[str], checked: list[str]) -> None:
        """The rows `shown` on a page are now selected exactly when they are in `checked`."""
        shown, checked = _ids(shown), set(_ids(checked))
        if self.is_filter:
            excluded = [entry_id for entry_id in self.excluded if entry_id not in shown]
            self.excluded = (excluded + [entry_id for entry_id in shown if entry_id not in checked])[:MAX_IDS]
        else:
            kept = [entry_id for entry_id in self.ids if entry_id not in shown or entry_id in checked]
            self.ids = (kept + [entry_id for entry_id in shown if entry_id in checked and entry_id not in kept])[
                :MAX_IDS
            ]
        self._save()

    def clear(self) -> None:
        self.filter_query, self.ids, self.excluded = None, [], []
        self._save()

    def queryset(self) -> QuerySet[Entry]:
        """The selected entries, in the browse page's default order; raises selectors.InvalidSelection."""
        if self.is_filter:
            return selectors.entry_list(data=QueryDict(self.filter_query)).exclude(id__in=self.excluded)
        return selectors.entry_list(data={}).filter(id__in=self.ids)

    def checked_among(self, entry_ids: list[str]) -> set[str]:
        if self.empty or not entry_ids:
            return set()
        try:
            return set(self.queryset().filter(id__in=entry_ids).values_list("id", flat=True))
        except selectors.InvalidSelection:
            return set()

    def count(self) -> int:
        if self.empty:
            return 0
        try:
            return self.queryset().count()
        except selectors.InvalidSelection:  # a category removed since, say
            return 0
