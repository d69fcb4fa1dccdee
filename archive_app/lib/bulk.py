"""Writing thousands of rows at once: a sync page (entries, flavors, category links), a batch's items
and their preview audit events.

Not bulk_create: it builds a model instance per row, prepares every value of every row through its
field's get_db_prep_save, and on SQLite sends at most 999 parameters per statement. That was 40% of a
full sync, and most of the time of writing a 5,000-entry batch. Not executemany either: the drivers
release and retake the GIL, and PostgreSQL parses and plans, once per row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from django.db import connection, models
from django.utils import timezone


def _datetime_adapter() -> Callable[[datetime | None], object]:
    """The database's form of an aware datetime, as connection.ops.adapt_datetimefield_value gives it.

    On SQLite that is str() of the time made naive in the connection's time zone; done here without
    Django's per-value checks, which cost more than the rest of a flavor's row.
    """
    if connection.vendor != "sqlite":
        return connection.ops.adapt_datetimefield_value
    zone = connection.timezone
    return lambda value: None if value is None else str(value.astimezone(zone).replace(tzinfo=None))


def _adapters(fields: list[models.Field]) -> list[tuple[int, Callable]]:
    """(position, adapter) for the columns whose Python values the driver does not take as they are."""
    adapters = []
    for position, model_field in enumerate(fields):
        if isinstance(model_field, models.DateTimeField):
            adapters.append((position, _datetime_adapter()))
        elif isinstance(model_field, models.JSONField) and connection.vendor != "postgresql":
            # On PostgreSQL the rows travel as one JSON document, so a JSON value is already in place.
            encoder = model_field.encoder
            adapters.append((position, lambda value, encoder=encoder: json.dumps(value, cls=encoder)))
    return adapters


def insert(model: type[models.Model], names: list[str], rows: Sequence[Sequence], *, upsert: bool = False) -> None:
    """INSERT rows of values for these fields (by name; a foreign key by its attname, e.g. "batch_id"), a
    page per statement or so. With `upsert`, a row whose first column (the primary key) exists updates its
    other columns instead (ON CONFLICT DO UPDATE: SQLite 3.24+ and PostgreSQL).

    Values are what the driver takes (str, int, bool, None), aware datetimes, and for a JSONField any
    JSON-able value; nothing else is converted.
    """
    if not rows:
        return
    fields = [model._meta.get_field(name) for name in names]
    adapters = _adapters(fields)
    if adapters:
        adapted = []
        for row in rows:
            values = list(row)
            for position, adapt in adapters:
                values[position] = adapt(values[position])
            adapted.append(values)
        rows = adapted
    ops = connection.ops
    table = ops.quote_name(model._meta.db_table)
    columns = [model_field.column for model_field in fields]
    quoted = [ops.quote_name(column) for column in columns]
    insert_sql = f"INSERT INTO {table} ({', '.join(quoted)})"
    conflict = ""
    if upsert:
        conflict = f" ON CONFLICT ({quoted[0]}) DO UPDATE SET " + ", ".join(f"{q} = excluded.{q}" for q in quoted[1:])
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The page as one JSON parameter: psycopg's client-side binding (Django's default) would
            # scan for every one of 40,000 %s placeholders per page in Python.
            payload = json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str)
            cursor.execute(
                f"{insert_sql} SELECT {', '.join(quoted)} FROM json_populate_recordset(NULL::{table}, %s){conflict}",
                [payload],
            )
            return
        if connection.vendor == "sqlite":
            # As many rows as SQLite's limit on parameters allows (32,766 by default since 3.32;
            # Django assumes the old 999). Through the DB-API cursor with sqlite3's own "?": Django's
            # cursor rewrites every one of those %s markers with a regular expression, per statement.
            per_statement = max(1, connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(names))
            execute, placeholder = connection.connection.cursor().execute, "?"
        else:
            per_statement = max(1, ops.bulk_batch_size(names, rows))
            execute, placeholder = cursor.execute, "%s"
        row_sql = "(" + ", ".join([placeholder] * len(names)) + ")"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            execute(
                f"{insert_sql} VALUES {', '.join([row_sql] * len(chunk))}{conflict}",
                [value for row in chunk for value in row],
            )


def create(model: type[models.Model], rows: list[dict]) -> None:
    """INSERT new rows given as {field attname: value}; a field left out gets its default, as save() would
    give it (auto_now / auto_now_add times included). The primary key is left to the database."""
    if not rows:
        return
    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults: dict[str, Callable] = {}
    for model_field in fields:
        if getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            defaults[model_field.attname] = lambda: now
        else:
            defaults[model_field.attname] = model_field.get_default
    names = [model_field.attname for model_field in fields]
    insert(model, names, [[row[n] if n in row else defaults[n]() for n in names] for row in rows])
