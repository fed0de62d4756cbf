"""The JSON of a request, decoded as the contract says: UTF-8 only, an object as the body.

json.loads alone takes UTF-16 and UTF-32 bodies, raises UnicodeDecodeError (not a
JSONDecodeError) on bad UTF-8 bytes and RecursionError on arrays nested thousands deep: each
of those reached the caller as an HTTP 500.
"""

from __future__ import annotations

import json


class BadRequest(ValueError):
    """The request's JSON cannot be used; the message says why and what to send."""


def request_json(text: str, what: str = "a URL parameter") -> object:
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequest(f"the JSON of {what} nests too deeply; flatten it") from None
    except ValueError as error:
        raise BadRequest(f"Unable to parse {what} as JSON: {error}") from None


def request_body(body: bytes) -> dict[str, object]:
    """A POST body: a JSON object (query, variables, operationName, extensions) in UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"the body is not UTF-8 (byte {error.start}); send JSON encoded in UTF-8"
        ) from None
    parsed = request_json(text, "the request body")
    if not isinstance(parsed, dict):
        raise BadRequest(
            f'the body must be a JSON object like {{"query": "..."}}, not {_kind(parsed)}'
        )
    return parsed


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array (batching is not enabled)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "null"
