"""Migration files are refused before anything runs when they would end the runner's transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.migrate import MigrationError, load_migrations


def write(tmp_path: Path, sql: str) -> Path:
    (tmp_path / "0001_only.sql").write_text(sql)
    return tmp_path


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE a (id int);\nCOMMIT;\n",
        "begin;\nCREATE TABLE a (id int);",
        "CREATE TABLE a (id int); END",
        "START TRANSACTION;",
        "ROLLBACK;",
        "abort;",
        "PREPARE TRANSACTION 'x';",
        "COMMIT PREPARED 'x';",
    ],
)
def test_transaction_control_is_refused(tmp_path: Path, sql: str) -> None:
    with pytest.raises(MigrationError, match=r"0001_only\.sql: .*controls the transaction"):
        load_migrations(write(tmp_path, sql))


@pytest.mark.parametrize(
    "sql",
    [
        "DO $$\nBEGIN\n  PERFORM 1;\nEND\n$$;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN 1; END; $f$;",
        "SELECT 'commit; begin';",
        "-- COMMIT;\nSELECT 1;",
        "/* END; */ SELECT 1;",
        'CREATE TABLE "end" (id int);',
        "SAVEPOINT s; ROLLBACK TO s;",
        "PREPARE q AS SELECT 1;",
    ],
)
def test_the_same_words_inside_bodies_strings_or_comments_are_fine(
    tmp_path: Path, sql: str
) -> None:
    assert [m.name for m in load_migrations(write(tmp_path, sql))] == ["0001_only.sql"]
