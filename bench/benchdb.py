"""The fresh database each benchmark child process runs on, and its removal (SQLite file or PostgreSQL database)."""

from __future__ import annotations

from pathlib import Path

PG_SERVER = "postgres://postgres@127.0.0.1:5432"


def prepare_database(kind: str, sqlite_path: Path, pg_name: str) -> str:
    """An empty database of this kind (any earlier one removed); its DATABASE_URL."""
    drop_database(kind, sqlite_path, pg_name)
    if kind == "sqlite":
        return f"sqlite:///{sqlite_path}"
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {pg_name}")
    return f"{PG_SERVER}/{pg_name}"


def drop_database(kind: str, sqlite_path: Path, pg_name: str) -> None:
    if kind == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{sqlite_path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
