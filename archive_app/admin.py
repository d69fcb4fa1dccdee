from django.contrib import admin

from archive_app.models import Category, Entry, Flavor


class ReadOnlyMirrorAdmin(admin.ModelAdmin):
    """The mirror is written by sync only: editing it here would be overwritten and misleading."""

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
class EntryAdmin(ReadOnlyMirrorAdmin):
    list_display = ["id", "name", "owner_id", "created_at", "last_played_at", "plays", "archive_state"]
    list_filter = ["archive_state", "status", "media_type", "gone"]
    search_fields = ["id", "name", "owner_id"]
    inlines = [FlavorInline]


@admin.register(Category)
class CategoryAdmin(ReadOnlyMirrorAdmin):
    list_display = ["id", "full_name", "entries_count"]
    search_fields = ["full_name"]
