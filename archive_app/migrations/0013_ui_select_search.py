"""The Entries page's free-text search (filters.EntryFilterSet.filter_search) on PostgreSQL.

Django writes `name__icontains` there as UPPER(name) LIKE UPPER('%word%'), so the trigram
indexes are on those same expressions; the id prefix uses the primary key's own
varchar_pattern_ops index that Django makes. SQLite gets nothing: it scans, which only a
search pays for (bench/bench_browse.py does not search).
"""

from django.db import migrations

SEARCH_INDEXES = {
    "entry_name_upper_trgm": "name",
    "entry_description_upper_trgm": "description",
    "entry_owner_upper_trgm": "owner_id",
}


def create_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in SEARCH_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX {name} ON archive_app_entry USING gin (UPPER({column}) gin_trgm_ops)")


def drop_search_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in SEARCH_INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("archive_app", "0012_preservation_fixity_holds_sidecar"),
    ]

    operations = [migrations.RunPython(create_search_indexes, drop_search_indexes)]
