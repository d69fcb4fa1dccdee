from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from archive_app.models import AuditEvent, Category, Entry, Flavor
from archive_app.roles import ARCHIVE_ADMINS


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never edited here: the mirror is written by sync only (an edit would be overwritten and
    misleading), and the audit log is append-only."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class FlavorInline(admin.TabularInline):
    model = Flavor
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "name", "owner_id", "created_at", "last_played_at", "plays", "archive_state"]
    list_filter = ["archive_state", "status", "media_type", "gone"]
    search_fields = ["id", "name", "owner_id"]
    inlines = [FlavorInline]


@admin.register(Category)
class CategoryAdmin(ReadOnlyAdmin):
    list_display = ["id", "full_name", "entries_count"]
    search_fields = ["full_name"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the audit log is append-only (the model refuses changes too); the app's own
    audit log page filters and exports it."""

    list_display = ["created_at", "username", "action", "entry_id", "batch", "dry_run", "outcome", "message"]
    list_filter = ["outcome", "dry_run", "action"]
    search_fields = ["username", "entry_id", "action"]
    date_hierarchy = "created_at"
    list_select_related = ["batch"]
    actions = None  # not even the "delete selected" action


class ArchiveUserAdmin(UserAdmin):
    """Archive admins manage users here and give roles by group. Only a superuser may grant
    superuser status or single permissions, or edit a superuser; staff status follows the
    Archive admins group, so an admin made here can use the admin and the RQ dashboard."""

    # Recorded by Django, not typed: shown, not edited (their split date/time inputs had no labels either).
    readonly_fields = ["last_login", "date_joined"]
    # Plain labelled multi-selects: the two-box widget's script adds ARIA that screen readers are told to ignore.
    filter_horizontal = ()

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser or obj is None:
            return fieldsets
        reserved = {"is_superuser", "is_staff", "user_permissions"}
        return [
            (name, {**options, "fields": [field for field in options["fields"] if field not in reserved]})
            for name, options in fieldsets
        ]

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        user = form.instance
        is_staff = user.is_superuser or user.groups.filter(name=ARCHIVE_ADMINS).exists()
        if user.is_staff != is_staff:
            user.is_staff = is_staff
            user.save(update_fields=["is_staff"])


admin.site.unregister(User)
admin.site.register(User, ArchiveUserAdmin)
