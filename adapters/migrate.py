"""Schema migrations: `migrations/NNNN_name.sql`, each applied once, in order, atomically.

Each file runs in its own transaction together with the row recording it, so a failing file
leaves the schema exactly as it was (Postgres DDL is transactional). A transaction-scoped
advisory lock serialises concurrent migrators: the second one waits, then finds nothing to do.
Files must not contain BEGIN/COMMIT or statements that refuse to run in a transaction
(CREATE INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE before Postgres 12). Transaction control
is refused before anything runs: a COMMIT inside a file would make the statements before it
permanent even when a later one fails.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from importlib.resources.abc import Traversable
from pathlib import Path

import sqlalchemy
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

_log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# What is not a statement's own words: comments, quoted text, dollar-quoted bodies (a function's
# BEGIN ... END is no transaction control). E'...' strings with backslash-escaped quotes are
# not understood; no migration here needs them.
_NOT_CODE = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$([A-Za-z_]\w*|)\$.*?\$\1\$",
    re.DOTALL,
)
_TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "END", "ABORT", "ROLLBACK", "START", "PREPARE"}

# Any fixed bigint works; this one is "profiles" in ASCII, so it is recognisable in pg_locks.
_LOCK_KEY = 0x70726F66696C6573

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version int PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """A migration could not be applied, or the recorded history disagrees with the files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name, e.g. 0001_event_store.sql
    sql: str
    checksum: str


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None  # None: pending
    checksum_ok: bool  # False: the file changed after it was applied


def sqlalchemy_url(database_url: str) -> str:
    """`postgresql://...` (also `?host=/socket/dir`) -> the same URL for the psycopg 3 driver."""
    url = make_url(database_url)
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise MigrationError(f"not a Postgres URL: {url.render_as_string(hide_password=True)}")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def load_migrations(source: Path | None = None) -> list[Migration]:
    """The migration files in `source` (default: the `migrations` package), by version."""
    root: Traversable = source if source is not None else importlib.resources.files("migrations")
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            # Silently skipping a misnamed file would leave its change unapplied.
            raise MigrationError(f"{entry.name}: migration files are named NNNN_lower_name.sql")
        # Normalised line endings: a checkout with CRLF must not look like an edited file.
        sql = entry.read_text(encoding="utf-8").replace("\r\n", "\n")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{entry.name} and {found[version].name} share version {version}")
        _refuse_transaction_control(entry.name, sql)
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        found[version] = Migration(version, entry.name, sql, checksum)
    return [found[version] for version in sorted(found)]


def _refuse_transaction_control(name: str, sql: str) -> None:
    for statement in _NOT_CODE.sub(" ", sql).split(";"):
        words = statement.upper().split()[:2]
        if not words or words[0] not in _TRANSACTION_CONTROL:
            continue
        second = words[1] if len(words) > 1 else ""
        if words[0] == "ROLLBACK" and second == "TO":
            continue  # back to a savepoint: stays inside the transaction
        if words[0] in ("START", "PREPARE") and second != "TRANSACTION":
            continue  # PREPARE name AS ...: a prepared statement
        raise MigrationError(
            f"{name}: {' '.join(words)} controls the transaction; each file already runs in "
            "one transaction with its ledger row, so remove it"
        )


def _engine(database_url: str) -> sqlalchemy.Engine:
    # One-off work: no pool left holding connections afterwards.
    return sqlalchemy.create_engine(sqlalchemy_url(database_url), poolclass=NullPool)


def _recorded(conn: Connection) -> dict[int, tuple[str, str, datetime]]:
    exists = conn.execute(text("SELECT to_regclass('public.schema_migrations')")).scalar()
    if exists is None:
        return {}
    rows = conn.execute(
        text("SELECT version, name, checksum, applied_at FROM public.schema_migrations")
    )
    return {row.version: (row.name, row.checksum, row.applied_at) for row in rows}


def status(database_url: str, source: Path | None = None) -> list[MigrationStatus]:
    """Every migration file, applied (with when, and whether it is unchanged since) or pending."""
    migrations = load_migrations(source)
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            recorded = _recorded(conn)
    finally:
        engine.dispose()
    result = []
    for migration in migrations:
        row = recorded.get(migration.version)
        result.append(
            MigrationStatus(
                version=migration.version,
                name=migration.name,
                applied_at=row[2] if row else None,
                checksum_ok=row is None or row[1] == migration.checksum,
            )
        )
    unknown = sorted(set(recorded) - {m.version for m in migrations})
    if unknown:
        # Older code running against a newer schema: worth knowing, not an error.
        _log.warning("applied migrations without a file here: %s", unknown)
    return result


def _changed(migrations: list[Migration], recorded: dict[int, tuple[str, str, datetime]]) -> None:
    changed = [
        m.name for m in migrations if m.version in recorded and recorded[m.version][1] != m.checksum
    ]
    if changed:
        raise MigrationError(
            f"applied migration(s) {', '.join(changed)} changed since they were applied; "
            "restore the original file(s) and put the change in a new migration"
        )


def migrate(database_url: str, source: Path | None = None) -> list[str]:
    """Apply the pending migrations in version order; return the names of those applied."""
    migrations = load_migrations(source)
    applied: list[str] = []
    engine = _engine(database_url)
    try:
        for migration in migrations:
            with engine.begin() as conn:
                # Taken before reading the ledger, so a second migrator sees the first one's work.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
                conn.execute(text(_CREATE_LEDGER))
                recorded = _recorded(conn)
                _changed(migrations, recorded)
                if migration.version in recorded:
                    continue
                _apply(conn, migration)
            applied.append(migration.name)
            _log.info("applied migration %s", migration.name)
    finally:
        engine.dispose()
    return applied


def _apply(conn: Connection, migration: Migration) -> None:
    import psycopg

    driver_connection = conn.connection.dbapi_connection
    assert driver_connection is not None  # a Connection inside begin() is always checked out
    cursor = driver_connection.cursor()
    try:
        # The raw cursor without parameters: psycopg sends the text as one simple query, so a
        # file may hold many statements, and '%' in it is not taken for a placeholder.
        cursor.execute(migration.sql)
    except psycopg.Error as error:
        diag = error.diag
        where = f" (SQLSTATE {diag.sqlstate})" if diag.sqlstate else ""
        message = diag.message_primary or str(error)
        raise MigrationError(f"migration {migration.name} failed{where}: {message}") from error
    finally:
        cursor.close()
    conn.execute(
        text("INSERT INTO public.schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
        {"v": migration.version, "n": migration.name, "c": migration.checksum},
    )
