"""`profiles serve --role ROLE`, as the benchmark runs it: uvloop + httptools, no projector.

python -m bench.server PORT [ROLE]   (ROLE all, commands, query or audit, default commands;
                                      DATABASE_URL and the rest come from the environment)
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn


def main(port: int, role: str = "commands") -> None:
    from adapters.settings import Settings
    from api.app import create_app  # here, not above: the bare endpoint serves with `serve`

    serve(create_app(Settings.from_env(), role), port)


def serve(app: Any, port: int) -> None:
    """uvicorn on uvloop and httptools, quiet: how every bench server runs."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), *sys.argv[2:3])
