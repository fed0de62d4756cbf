"""`profiles replay`, `profiles export` and `profiles keys rotate` against the real store."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest

from api.cli import main
from tests.integration.conftest import Service
from tests.integration.queries import TRAITS

ERASE = "mutation($input: EraseInput!) { eraseProfile(input: $input) { version } }"
HISTORY = "query($id: ID!) { history(customerId: $id) { events { data } } }"


def traits(service: Service, customer: str, **values: str) -> None:
    assert "errors" not in service.command(TRAITS, input={"customerId": customer, "traits": values})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_replay_prints_the_profile_now_and_as_of_a_version(
    service: Service, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", str(service.settings.database_url))
    traits(service, "c-1", firstName="Ada")
    traits(service, "c-1", firstName="Grace")
    code, out = run(capsys, "replay", "c-1", "--version", "2")
    assert code == 0 and json.loads(out)["traits"] == {"firstName": "Ada"}
    code, out = run(capsys, "replay", "c-1")
    assert json.loads(out)["traits"] == {"firstName": "Grace"}
    code, out = run(capsys, "export", "c-1")
    assert code == 0 and json.loads(out)["version"] == 3
    assert main(["replay", "nobody"]) == 1


def test_rotated_keys_seal_new_events_and_old_ones_stay_readable(
    service: Service,
    start_service: Callable[..., Service],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = str(service.settings.database_url)
    monkeypatch.setenv("DATABASE_URL", url)
    traits(service, "c-1", firstName="Ada")
    traits(service, "gone", firstName="X")
    service.command(ERASE, input={"customerId": "gone", "reason": "r", "requestedBy": "dpo"})
    code, out = run(capsys, "keys", "rotate")
    assert code == 0 and "rotated the data keys of 1 customers" in out
    # A running writer keeps its cached key until restarted: a new one takes the new key.
    restarted = start_service(service.settings, project=False)
    traits(restarted, "c-1", lastName="Lovelace")
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version, key IS NULL FROM profiles_data_keys").fetchall()
        # The sealed header: 0x01, then the key version as a big-endian u16.
        used = conn.execute(
            "SELECT get_byte(state, 1) * 256 + get_byte(state, 2) FROM profiles_events "
            "WHERE topic LIKE '%TraitsUpdated' ORDER BY notification_id"
        ).fetchall()
    assert sorted(versions) == [(1, False), (1, True), (2, False)]
    assert [u for (u,) in used] == [1, 1, 2]
    events = service.audit(HISTORY, id="c-1")["data"]["history"]["events"]
    assert [e["data"].get("traits") for e in events[1:]] == [
        {"firstName": "Ada"},
        {"lastName": "Lovelace"},
    ]
