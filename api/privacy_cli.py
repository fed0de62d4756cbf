"""`profiles replay | export | keys rotate`: audit and privacy tools on the event store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from adapters.data_keys import PostgresDataKeys
from adapters.settings import Settings
from adapters.store_config import build_application
from domain.application import utc_now
from domain.errors import InvalidInput
from domain.export import profile_document
from domain.ids import customer_uuid
from domain.normalise import parse_utc

COMMANDS = ("replay", "export", "keys")


def add_parsers(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="print a customer's profile rebuilt from the event store, now or as of a time "
        "or version (what the audit side's profileAsOf answers)",
    )
    replay.add_argument("customer_id")
    when = replay.add_mutually_exclusive_group()
    when.add_argument("--at", help="RFC 3339 time: events recorded at or before it")
    when.add_argument("--version", type=int, help="events up to this version")

    export = sub.add_parser(
        "export", help="print everything held about a customer as one JSON document"
    )
    export.add_argument("customer_id")

    keys = sub.add_parser("keys", help="data keys: rotate")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate",
        help="give customers a new data key for their new events (all customers by default)",
    )
    rotate.add_argument("--customer", action="append", help="a customer id (repeatable)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.database_url:
        print(f"profiles {args.command} needs DATABASE_URL", file=sys.stderr)
        return 2
    if args.command == "keys":
        return _rotate(args, settings)
    app = build_application(settings, utc_now, cache=False)
    try:
        if args.command == "replay":
            at = parse_utc(args.at, "--at") if args.at else None
            customer = app.profile_as_of(args.customer_id, at=at, version=args.version)
            document = None if customer is None else profile_document(args.customer_id, customer)
        else:
            document = app.export(args.customer_id, settings.score_model)
    except InvalidInput as error:
        print(f"profiles {args.command}: {error}", file=sys.stderr)
        return 2
    finally:
        app.close()
    if document is None:
        print(f"profiles {args.command}: no customer {args.customer_id!r}", file=sys.stderr)
        return 1
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    keys = PostgresDataKeys(str(settings.database_url))
    try:
        ids = [customer_uuid(c) for c in args.customer] if args.customer else None
        rotated = keys.rotate(ids)
    finally:
        keys.close()
    print(f"rotated the data keys of {rotated} customers (erased customers get none)")
    return 0
