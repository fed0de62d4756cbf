"""The data-key vault's caches against the real key table: a writer's ready ciphers never
outlive the keys they were made from."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from adapters.data_keys import PostgresDataKeys
from adapters.migrate import migrate
from domain.errors import CustomerErased


@pytest.fixture
def migrated(fresh_database_url: str) -> str:
    migrate(fresh_database_url)
    return fresh_database_url


def test_a_ready_cipher_is_reused_until_the_customers_keys_change(migrated: str) -> None:
    vault = PostgresDataKeys(migrated)
    uid = uuid.uuid4()
    try:
        vault.prepare([uid])
        version, cipher = vault.for_writing(uid)
        assert vault.for_writing(uid)[1] is cipher, "set up again although nothing changed"
        assert vault.rotate([uid]) == 1
        rotated, fresh = vault.for_writing(uid)
        assert (version, rotated) == (1, 2)
        assert fresh is not cipher
    finally:
        vault.close()


def test_a_forgotten_customer_gets_no_cipher_from_the_cache(migrated: str) -> None:
    """As after an erasure: the key is shredded in the store, then forgotten here."""
    vault = PostgresDataKeys(migrated)
    uid = uuid.uuid4()
    try:
        vault.prepare([uid])
        vault.for_writing(uid)
        with psycopg.connect(migrated, autocommit=True) as conn:
            conn.execute(
                "UPDATE profiles_data_keys SET key = NULL, shredded_at = now() "
                "WHERE customer_id = %s",
                (uid,),
            )
        vault.forget([uid])
        with pytest.raises(CustomerErased):
            vault.for_writing(uid)
    finally:
        vault.close()


def test_the_ready_ciphers_are_bounded(migrated: str) -> None:
    vault = PostgresDataKeys(migrated, writing_ciphers=2)
    uids = [uuid.uuid4() for _ in range(3)]
    try:
        vault.prepare(uids)
        first = vault.for_writing(uids[0])[1]
        for uid in uids[1:]:
            vault.for_writing(uid)
        assert vault.for_writing(uids[0])[1] is not first, "the oldest was kept past the bound"
    finally:
        vault.close()
