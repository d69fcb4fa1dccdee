"""Entry loses three single-column indexes that wider ones already cover: archive_state (and PostgreSQL's
varchar_pattern_ops copy of it, which nothing uses), plays and last_played_at; entry_state_id,
entry_plays_id and entry_last_played_id start with the same columns. Every entry a sync writes updated
all of them (24 indexes on PostgreSQL; the indexes were ~90 % of the time PostgreSQL spends on inserting a
page of 500 entries).

SQLite rebuilds the table, keeping only the indexes the models declare: the hand-made ones are made again.
"""

from django.db import migrations, models

SQLITE_HAND_MADE_INDEXES = {
    "entry_last_played_id": "last_played_at, id",
    "entry_browse_text": (
        "created_at, last_played_at, gone, archive_state, total_flavor_bytes, plays, status, media_type, "
        "original_size_bytes, category_search, tags_search"
    ),
}


def recreate_sqlite_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for name, columns in SQLITE_HAND_MADE_INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON archive_app_entry ({columns})")


class Migration(migrations.Migration):
    dependencies = [
        ("archive_app", "0015_mirror_long_fields"),
    ]

    operations = [
        migrations.AlterField(
            model_name="entry",
            name="archive_state",
            field=models.CharField(
                choices=[
                    ("initial", "not archived"),
                    ("archived", "archived (copy in S3)"),
                    ("placeholder", "placeholder (flavors freed)"),
                ],
                default="initial",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="entry",
            name="last_played_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="entry",
            name="plays",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(recreate_sqlite_indexes, migrations.RunPython.noop),
    ]
