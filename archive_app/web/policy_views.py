"""Pages for archive policies, exemptions, and the owners' keep page (reached from a notice, no sign-in)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.db.models import ProtectedError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from archive_app import audit
from archive_app.lib.kaltura import Kaltura, KalturaError
from archive_app.mirror import selectors
from archive_app.mirror.filters import ENTRY_ID_RE, EntryFilterSet, describe_filter
from archive_app.models import ArchivePolicy, BatchItem, BatchNotice, Category, Entry, OwnerNotice
from archive_app.scheduling import exemptions, notices, policies

RUN = "archive_app.run_batches"


FILTER_PREFIX = "filter"


class PolicyForm(forms.ModelForm):
    """The policy's own fields; its filter is the Entries page's filter form (PolicyFilter), never typed text."""

    class Meta:
        model = ArchivePolicy
        fields = ["name", "action", "schedule", "notice_days", "enabled", "next_run_at"]
        labels = {"notice_days": "Notice period (days)", "next_run_at": "Next run"}
        help_texts = {"next_run_at": "when the scheduler next makes a batch from it (YYYY-MM-DD HH:MM)"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["notice_days"].max_value = 365
        self.fields["notice_days"].widget.attrs["max"] = 365
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, forms.Select):
                widget.attrs["class"] = "form-select"
            elif isinstance(widget, forms.CheckboxInput):
                widget.attrs["class"] = "form-check-input"
            else:
                widget.attrs["class"] = "form-control"

    def clean_notice_days(self):
        days = self.cleaned_data["notice_days"]
        if days > 365:
            raise forms.ValidationError("At most 365 days.")
        return days


class PolicyFilter:
    """The policy's filter: the browse filter form under the prefix "filter-", checked as a policy needs.

    Refused: a field the Entries page does not have (a typo would otherwise widen the selection),
    a filter without a condition of age, plays, category, tag or ids, and, unless confirmed, one
    that selects more than ARCHIVE_POLICY_MAX_SHARE of the library.
    """

    def __init__(self, data: QueryDict | None, *, query: str = ""):
        if data is None:  # drawn from a stored or passed-on query string
            data = QueryDict(mutable=True)
            for key, values in QueryDict(query.lstrip("?")).lists():
                data.setlist(f"{FILTER_PREFIX}-{key}", values)
        self.data = data
        self.filterset = EntryFilterSet(data=data, queryset=Entry.objects.all(), prefix=FILTER_PREFIX)
        self.form = self.filterset.form
        self.errors: list[str] = []
        self.query = ""
        self.selected = self.library = 0
        self.needs_confirmation = False

    def unprefixed(self) -> QueryDict:
        own = f"{FILTER_PREFIX}-"
        data = QueryDict(mutable=True)
        for key, values in self.data.lists():
            if key.startswith(own):
                data.setlist(key[len(own) :], values)
        return data

    def is_valid(self, *, confirmed: bool) -> bool:
        if not self.filterset.is_valid():
            self.errors.append("The filter is not valid: correct the fields marked below.")
            return False
        try:
            self.query = policies.normalise_filter(self.unprefixed())
        except ValueError as exc:
            self.errors.append(f"The filter {exc}.")
            return False
        except selectors.InvalidSelection as exc:
            self.errors.append(f"The filter is not valid: {exc}")
            return False
        self.selected = selectors.entry_list(data=QueryDict(self.query)).count()
        self.library = Entry.objects.filter(gone=False).count()
        share = settings.ARCHIVE_POLICY_MAX_SHARE
        if self.library and self.selected > share * self.library and not confirmed:
            self.needs_confirmation = True
            self.errors.append(
                f"This filter selects {self.selected:,} of the library's {self.library:,} entries "
                f"({self.selected / self.library:.0%}), more than the {share:.0%} a policy may take without a "
                "second thought. Tick the confirmation to save it anyway."
            )
            return False
        return True


def _policy_rows():
    rows = []
    for policy in ArchivePolicy.objects.all():
        try:
            selected = selectors.entry_list(data=QueryDict(policy.filter_query)).count()
        except selectors.InvalidSelection:
            selected = None
        rows.append({"policy": policy, "selected": selected, "conditions": describe_filter(policy.filter_query)})
    return rows


@require_GET
@permission_required(RUN, raise_exception=True)
def policy_list(request: HttpRequest) -> HttpResponse:
    return render(request, "archive_app/policy_list.html", {"rows": _policy_rows()})


def _save_policy(request: HttpRequest, form: PolicyForm, policy_filter: PolicyFilter, *, action: str) -> ArchivePolicy:
    policy = form.save(commit=False)
    changed = {field: str(form.cleaned_data[field]) for field in form.changed_data}
    if policy.filter_query != policy_filter.query:
        changed["filter_query"] = policy_filter.query
    policy.filter_query = policy_filter.query
    if policy.created_by_id is None:
        policy.created_by = request.user
    policy.save()
    audit.record(
        action,
        user=request.user,
        dry_run=False,
        message=policy.name,
        details=changed | {"policy": policy.pk, "selected": policy_filter.selected},
    )
    return policy


def _policy_page(request: HttpRequest, form: PolicyForm, policy_filter: PolicyFilter, policy) -> HttpResponse:
    context = {"form": form, "policy": policy, "filter": policy_filter, "filter_form": policy_filter.form}
    return render(request, "archive_app/policy_form.html", context)


def _post_policy(request: HttpRequest, policy: ArchivePolicy | None) -> HttpResponse:
    form = PolicyForm(request.POST, instance=policy)
    policy_filter = PolicyFilter(request.POST)
    filter_ok = policy_filter.is_valid(confirmed=request.POST.get("confirm_share") == "yes")
    if form.is_valid() and filter_ok:
        saved = _save_policy(request, form, policy_filter, action="policy_change" if policy else "policy_create")
        messages.success(request, f"Saved policy {saved.name}: it selects {policy_filter.selected:,} entries now.")
        return redirect("policy_list")
    return _policy_page(request, form, policy_filter, policy)


@require_http_methods(["GET", "POST"])
@permission_required(RUN, raise_exception=True)
def policy_create(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _post_policy(request, None)
    form = PolicyForm(initial={"next_run_at": timezone.localtime().replace(second=0, microsecond=0)})
    # From the Entries page's "Save this filter": its query string, shown with any error it has.
    query = request.GET.get("filter", "")
    policy_filter = PolicyFilter(None, query=query)
    if query:
        policy_filter.is_valid(confirmed=True)
    return _policy_page(request, form, policy_filter, None)


@require_http_methods(["GET", "POST"])
@permission_required(RUN, raise_exception=True)
def policy_edit(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = get_object_or_404(ArchivePolicy, pk=policy_id)
    if request.method == "POST":
        return _post_policy(request, policy)
    return _policy_page(request, PolicyForm(instance=policy), PolicyFilter(None, query=policy.filter_query), policy)


@require_POST
@permission_required(RUN, raise_exception=True)
def policy_delete(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = get_object_or_404(ArchivePolicy, pk=policy_id)
    try:
        policy.delete()
    except ProtectedError:  # pragma: no cover - batches keep the policy as SET_NULL
        messages.error(request, "This policy cannot be deleted.")
        return redirect("policy_list")
    audit.record(
        "policy_delete",
        user=request.user,
        dry_run=False,
        message=policy.name,
        details={"policy": policy_id, "filter": policy.filter_query},
    )
    messages.info(request, f"Deleted policy {policy.name}; its batches stay.")
    return redirect("policy_list")


# --- exemptions -------------------------------------------------------------------------


@require_GET
@permission_required(RUN, raise_exception=True)
def exemption_list(request: HttpRequest) -> HttpResponse:
    roots = exemptions.excluded_roots()
    categories = {c.id: c for c in Category.objects.filter(id__in=roots)}
    tree = list(Category.objects.values_list("full_ids", flat=True))

    def below(category_id: int) -> int:
        if category_id not in categories:
            return 0
        prefix = categories[category_id].full_ids + ">"
        return sum(1 for full_ids in tree if full_ids.startswith(prefix))

    context = {
        "entries": exemptions.exempt_entries()[:1000],
        "excluded": [
            {"id": pk, "category": categories.get(pk), "source": source, "subcategories": below(pk)}
            for pk, source in sorted(roots.items())
        ],
        "categories": Category.objects.exclude(id__in=roots).only("id", "full_name"),
    }
    return render(request, "archive_app/exemptions.html", context)


def _kaltura_or_message(request: HttpRequest) -> Kaltura | None:
    try:
        return Kaltura.from_settings()
    except ImproperlyConfigured as exc:
        messages.error(request, str(exc))
        return None


@require_POST
@permission_required(RUN, raise_exception=True)
def exemption_add(request: HttpRequest) -> HttpResponse:
    entry_id = request.POST.get("entry_id", "").strip()
    if not ENTRY_ID_RE.match(entry_id):
        messages.error(request, f"{entry_id!r} is not a Kaltura entry id (like 0_abcd1234).")
        return redirect("exemption_list")
    kaltura = _kaltura_or_message(request)
    if kaltura is not None:
        try:
            exemptions.entry_exempt(
                entry_id, kaltura=kaltura, user=request.user, reason=request.POST.get("reason", "")[:500]
            )
        except KalturaError as exc:
            if exc.code == "ENTRY_ID_NOT_FOUND":
                messages.error(request, f"There is no entry {entry_id} in Kaltura: check the id.")
            else:
                messages.error(request, f"Kaltura refused: {exc}")
        else:
            messages.success(request, f"{entry_id} is exempt: it will never be archived.")
    return redirect("exemption_list")


@require_POST
@permission_required(RUN, raise_exception=True)
def exemption_remove(request: HttpRequest, entry_id: str) -> HttpResponse:
    if not ENTRY_ID_RE.match(entry_id):
        raise Http404("not a Kaltura entry id")
    kaltura = _kaltura_or_message(request)
    if kaltura is not None:
        try:
            exemptions.entry_unexempt(entry_id, kaltura=kaltura, user=request.user)
        except KalturaError as exc:
            if exc.code == "ENTRY_ID_NOT_FOUND":
                messages.error(request, f"There is no entry {entry_id} in Kaltura any more.")
            else:
                messages.error(request, f"Kaltura refused: {exc}")
        else:
            messages.info(request, f"{entry_id} is no longer exempt.")
    return redirect("exemption_list")


@require_POST
@permission_required(RUN, raise_exception=True)
def category_exclude(request: HttpRequest) -> HttpResponse:
    try:
        category_id = int(request.POST.get("category_id", ""))
    except ValueError:
        messages.error(request, "Choose a category.")
        return redirect("exemption_list")
    if not Category.objects.filter(id=category_id).exists():
        messages.error(request, f"There is no category {category_id} in the mirror.")
        return redirect("exemption_list")
    exemptions.category_exclude(category_id, user=request.user, reason=request.POST.get("reason", ""))
    messages.success(request, "Excluded: its entries, and its sub-categories' entries, will never be archived.")
    return redirect("exemption_list")


@require_POST
@permission_required(RUN, raise_exception=True)
def category_include(request: HttpRequest, category_id: int) -> HttpResponse:
    if exemptions.category_include(category_id, user=request.user):
        messages.info(request, f"Category {category_id} is no longer excluded.")
    else:
        messages.error(request, f"Category {category_id} is not excluded on this page (is it in the setting?).")
    return redirect("exemption_list")


# --- the owner's keep page (no sign-in: the signed link is the credential) --------------


def _keep_refusal(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(request, "archive_app/keep_refused.html", {"message": message}, status=status)


EXPIRED = (
    "This link has expired: the notice period is over (or the archiving was called off, or the link is too old). "
    "If you still need a video kept, write to the media library."
)


@login_not_required
@require_http_methods(["GET", "POST"])
def keep_entries(request: HttpRequest) -> HttpResponse:
    """GET: a page that posts the token from the link's "#" part (static/js/keep.js), so the token never
    travels in a requested address. POST with the token: the owner's entries; with action=keep: keep them."""
    if request.method == "GET":
        return render(request, "archive_app/keep_open.html")
    token = request.POST.get("token", "").strip()
    try:
        batch_id, owner_id = notices.read_keep_token(token)
    except notices.KeepLinkExpired:
        return _keep_refusal(request, EXPIRED, 410)
    except signing.BadSignature:
        return _keep_refusal(
            request,
            "This link is not valid. It may have been altered, or cut short when it was copied: "
            "open it straight from the e-mail.",
            400,
        )
    owner_notice = OwnerNotice.objects.filter(batch_id=batch_id, owner_id=owner_id).select_related("batch").first()
    notice = BatchNotice.objects.filter(pk=batch_id).select_related("batch").first()
    if owner_notice is None or notice is None:
        return _keep_refusal(request, "This link does not belong to any archive notice.", 404)
    if not notices.keep_window_open(notice):
        return _keep_refusal(request, EXPIRED, 410)
    if request.POST.get("action") == "keep":
        try:
            kept = notices.keep_entries(owner_notice, request.POST.getlist("keep"))
        except notices.KeepRefused as refused:
            return _keep_refusal(request, f"Nothing was changed: {refused}.", 410)
        except (KalturaError, ImproperlyConfigured):
            messages.error(request, "Kaltura could not be reached just now; nothing was changed. Please try again.")
        else:
            if kept:
                messages.success(
                    request, f"Kept {len(kept)} video{'s' if len(kept) != 1 else ''}: they will not be archived."
                )
            else:
                messages.info(request, "Nothing was changed: choose the videos to keep.")
        owner_notice.refresh_from_db()
    items = {
        entry_id: (status, skip_reason)
        for entry_id, status, skip_reason in BatchItem.objects.filter(
            batch_id=batch_id, entry_id__in=owner_notice.entry_ids
        ).values_list("entry_id", "status", "skip_reason")
    }
    names = dict(Entry.objects.filter(id__in=owner_notice.entry_ids).values_list("id", "name"))
    rows = [
        {
            "id": entry_id,
            "name": names.get(entry_id, ""),
            "kept": items.get(entry_id, ("", ""))[1] == notices.KEPT_REASON,
            "pending": items.get(entry_id, ("", ""))[0] == BatchItem.Status.PENDING,
        }
        for entry_id in owner_notice.entry_ids
    ]
    context = {
        "rows": rows,
        "notice": notice,
        "owner_id": owner_id,
        "replace": notice.batch.action != "archive",
        "token": token,
        "used_at": owner_notice.keep_used_at,
    }
    return render(request, "archive_app/keep.html", context)
