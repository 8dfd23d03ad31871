"""``python -m homeserver.storage.probe DSN``: exit 0 if PostgreSQL answers at DSN, else 1."""

from __future__ import annotations

import asyncio
import sys

import asyncpg


async def _probe(dsn: str) -> bool:
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()
    return True


def main() -> int:
    return 0 if asyncio.run(_probe(sys.argv[1])) else 1


if __name__ == "__main__":
    sys.exit(main())
