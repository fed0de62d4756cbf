"""The migration runner against a real Postgres (embedded unless DATABASE_URL is set)."""

from __future__ import annotations

import importlib.resources
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from psycopg.conninfo import conninfo_to_dict

from adapters.migrate import (
    MigrationError,
    load_migrations,
    migrate,
    sqlalchemy_url,
    status,
)
from api.cli import main

PACKAGED = [m.name for m in load_migrations()]


def _copy_packaged(target: Path) -> Path:
    for entry in importlib.resources.files("migrations").iterdir():
        if entry.name.endswith(".sql"):
            (target / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def _query(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def _ledger(url: str) -> list[tuple[Any, ...]]:
    return _query(url, "SELECT version, name FROM schema_migrations ORDER BY version")


def _table_exists(url: str, name: str) -> bool:
    return _query(url, "SELECT to_regclass(%s)", name)[0][0] is not None


def test_sqlalchemy_url_keeps_the_socket_dir() -> None:
    url = sqlalchemy_url("postgresql://postgres:@/profiles?host=/tmp/x/pg")
    assert url.startswith("postgresql+psycopg://postgres:@/profiles?host=")
    assert "%2Ftmp%2Fx%2Fpg" in url or "/tmp/x/pg" in url
    assert sqlalchemy_url("postgres://u:p@db:5432/d") == "postgresql+psycopg://u:p@db:5432/d"
    with pytest.raises(MigrationError):
        sqlalchemy_url("mysql://u@h/d")


def test_applies_all_in_order_once(fresh_database_url: str) -> None:
    assert migrate(fresh_database_url) == PACKAGED
    assert migrate(fresh_database_url) == []
    assert [row[1] for row in _ledger(fresh_database_url)] == PACKAGED


def test_status_lists_applied_and_pending(fresh_database_url: str, tmp_path: Path) -> None:
    source = _copy_packaged(tmp_path)
    before = status(fresh_database_url, source)
    assert [(s.name, s.applied_at, s.checksum_ok) for s in before] == [
        (name, None, True) for name in PACKAGED
    ]
    migrate(fresh_database_url, source)
    (source / "0999_later.sql").write_text("CREATE TABLE later (id int);\n")
    after = status(fresh_database_url, source)
    assert [s.name for s in after] == [*PACKAGED, "0999_later.sql"]
    assert all(s.applied_at is not None and s.checksum_ok for s in after[:-1])
    assert after[-1].applied_at is None


def test_failing_migration_leaves_no_trace(fresh_database_url: str, tmp_path: Path) -> None:
    source = _copy_packaged(tmp_path)
    (source / "0900_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_column FROM half_done;\n"
    )
    with pytest.raises(MigrationError) as raised:
        migrate(fresh_database_url, source)
    assert "0900_broken.sql" in str(raised.value)
    assert "no_such_column" in str(raised.value)
    assert not _table_exists(fresh_database_url, "half_done")
    assert [row[1] for row in _ledger(fresh_database_url)] == PACKAGED
    assert status(fresh_database_url, source)[-1].applied_at is None


def _columns(url: str, table: str) -> list[str]:
    return [
        row[0]
        for row in _query(
            url,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            table,
        )
    ]


def test_failing_migration_leaves_existing_tables_as_they_were_and_stops_there(
    fresh_database_url: str, tmp_path: Path
) -> None:
    source = _copy_packaged(tmp_path)
    migrate(fresh_database_url, source)
    columns = _columns(fresh_database_url, "profiles_events")
    broken = source / "0900_alter_then_fail.sql"
    broken.write_text(
        "ALTER TABLE profiles_events ADD COLUMN extra int;\n"
        "CREATE INDEX profiles_events_extra ON profiles_events (extra);\n"
        "SELECT 1 / 0;\n"
    )
    (source / "0901_after.sql").write_text("CREATE TABLE after_broken (id int);\n")
    with pytest.raises(MigrationError, match=r"0900_alter_then_fail\.sql.*division by zero"):
        migrate(fresh_database_url, source)
    assert _columns(fresh_database_url, "profiles_events") == columns
    assert _query(fresh_database_url, "SELECT to_regclass('profiles_events_extra')") == [(None,)]
    # In order means never past a failure: the later file waits for the broken one.
    assert not _table_exists(fresh_database_url, "after_broken")
    assert [row[1] for row in _ledger(fresh_database_url)] == PACKAGED
    assert [s.applied_at for s in status(fresh_database_url, source)[-2:]] == [None, None]

    # Not applied, so it may still be fixed in place; then both go in, in order.
    broken.write_text("ALTER TABLE profiles_events ADD COLUMN extra int;\n")
    assert migrate(fresh_database_url, source) == ["0900_alter_then_fail.sql", "0901_after.sql"]
    assert _columns(fresh_database_url, "profiles_events") == [*columns, "extra"]


def test_transaction_control_in_a_file_is_refused_before_anything_runs(
    fresh_database_url: str, tmp_path: Path
) -> None:
    source = _copy_packaged(tmp_path)
    # Run as written, the COMMIT would keep half_done although the file then fails.
    (source / "0900_commits.sql").write_text(
        "CREATE TABLE half_done (id int);\nCOMMIT;\nSELECT no_such_column FROM half_done;\n"
    )
    with pytest.raises(MigrationError, match=r"0900_commits\.sql: COMMIT"):
        migrate(fresh_database_url, source)
    assert not _table_exists(fresh_database_url, "half_done")
    assert not _table_exists(fresh_database_url, "schema_migrations")


def test_cli_migrate_applies_and_status_lists_applied_and_pending(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)

    def run(*argv: str) -> list[str]:
        assert main(["migrate", *argv]) == 0
        return capsys.readouterr().out.splitlines()

    before = run("--status")
    assert [line.split()[1:] for line in before] == [[name, "pending"] for name in PACKAGED]
    assert run() == ["applied: " + ", ".join(PACKAGED)]
    after = run("--status")
    assert [line.split()[1:3] for line in after] == [[name, "applied"] for name in PACKAGED]
    assert all("changed" not in line for line in after)
    assert run() == ["applied: nothing, the schema is current"]


def test_changed_migration_is_reported_and_refused(fresh_database_url: str, tmp_path: Path) -> None:
    source = _copy_packaged(tmp_path)
    migrate(fresh_database_url, source)
    edited = source / PACKAGED[0]
    edited.write_text(edited.read_text() + "\n-- an afterthought\n")
    assert not status(fresh_database_url, source)[0].checksum_ok
    with pytest.raises(MigrationError, match=re.escape(PACKAGED[0])):
        migrate(fresh_database_url, source)


def test_misnamed_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "1_too_short.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"1_too_short\.sql"):
        load_migrations(tmp_path)


def test_concurrent_migrators_apply_each_file_once(fresh_database_url: str, tmp_path: Path) -> None:
    source = _copy_packaged(tmp_path)
    # Slow enough that the second migrator certainly arrives while the first holds the lock.
    (source / "0900_slow.sql").write_text(
        "SELECT pg_sleep(0.5);\nCREATE TABLE slow_marker (id int);\n"
    )
    barrier = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrate(fresh_database_url, source))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results[0] + results[1]) == sorted([*PACKAGED, "0900_slow.sql"])
    assert len(_ledger(fresh_database_url)) == len(PACKAGED) + 1


def _catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    tables = ("profiles_events", "profiles_snapshots")
    return {
        "columns": _query(
            url,
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = ANY(%s)"
            " ORDER BY table_name, ordinal_position",
            list(tables),
        ),
        "type": _query(
            url,
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod)"
            " FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid"
            " WHERE t.typname = 'stored_event_uuid' AND a.attnum > 0 ORDER BY a.attnum",
        ),
        "indexes": _query(
            url,
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = 'public' AND tablename = ANY(%s) ORDER BY indexname",
            list(tables),
        ),
        "options": _query(
            url,
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
            list(tables),
        ),
        "functions": _query(
            url, "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'es\\_%%' ORDER BY 1"
        ),
    }


class _Profiles(Application[Any]):
    name = "profiles"


def _library_env(url: str, create_table: bool) -> dict[str, str]:
    params = conninfo_to_dict(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params["dbname"]),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "CREATE_TABLE": "y" if create_table else "n",
        "IS_SNAPSHOTTING_ENABLED": "y",
    }


def test_schema_matches_what_eventsourcing_creates(new_database: Callable[[], str]) -> None:
    ours, libs = new_database(), new_database()
    migrate(ours)
    _Profiles(env=_library_env(libs, create_table=True)).close()

    expected = _catalog(libs)
    assert expected["type"], "the library created no stored_event_uuid type"
    assert expected["functions"], "the library created no insert function"
    assert {row[0] for row in expected["columns"]} == {"profiles_events", "profiles_snapshots"}
    assert _catalog(ours) == expected
    assert _table_exists(ours, "profiles_interaction_ids")


def test_library_runs_on_the_migrated_schema(fresh_database_url: str) -> None:
    migrate(fresh_database_url)
    app = _Profiles(env=_library_env(fresh_database_url, create_table=False))
    try:
        aggregate = Aggregate()
        app.save(aggregate)
        assert app.repository.get(aggregate.id).version == aggregate.version
        assert len(app.notification_log.select(start=1, limit=10)) == 1
    finally:
        app.close()


def test_migrations_package_ships_its_sql() -> None:
    names = [e.name for e in importlib.resources.files("migrations").iterdir()]
    assert "0001_event_store.sql" in names
