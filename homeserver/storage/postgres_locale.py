"""Whether a PostgreSQL database orders text the way this server needs (Synapse's check).

Room and user IDs are compared and sorted as byte strings (pagination keys, ``ORDER BY`` on IDs),
so the database must store UTF-8 and collate by code point. ``C`` and ``POSIX`` do; so does
``C.UTF-8`` (glibc's and PostgreSQL's builtin provider order it by code point, which for UTF-8
is byte order) — Synapse insists on plain ``C``, we accept the three. Any other locale sorts by
language rules that change with the operating system's locale data, so an index built before an
OS upgrade may not match one built after it.
"""

from __future__ import annotations

import json

from homeserver.storage.database import Database

#: Collations and ctypes that order UTF-8 text by code point.
BYTE_ORDER_LOCALES = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8", "C.UTF8", "C.utf-8"})


def locale_problems(
    encoding: str,
    collate: str,
    ctype: str,
    *,
    provider: str = "c",
    provider_locale: str | None = None,
) -> list[str]:
    """What is wrong with a database's encoding and locale (empty: nothing). ``provider`` is
    ``datlocprovider``: ``c`` (libc: ``collate`` rules), ``i`` (ICU) or ``b`` (builtin), whose
    locale ``provider_locale`` then decides the ordering instead."""
    problems = []
    if encoding.upper() not in ("UTF8", "UTF-8"):
        problems.append(f"its encoding is {encoding!r}, not UTF8")
    if provider == "c":
        if collate not in BYTE_ORDER_LOCALES:
            problems.append(f"its collation (LC_COLLATE) is {collate!r}, not C")
    elif provider_locale not in BYTE_ORDER_LOCALES:
        kind = "ICU" if provider == "i" else f"provider {provider!r}"
        problems.append(f"its collation is the {kind} locale {provider_locale!r}, not C")
    if ctype not in BYTE_ORDER_LOCALES:
        problems.append(f"its ctype (LC_CTYPE) is {ctype!r}, not C")
    return problems


async def check_postgres_locale(db: Database) -> list[str]:
    """:func:`locale_problems` of the database ``db`` is connected to."""
    encoding = await db.fetchval("SHOW SERVER_ENCODING")
    # As JSON: the provider columns differ between versions (daticulocale became datlocale).
    raw = await db.fetchval(
        "SELECT to_jsonb(d)::text FROM pg_database d WHERE datname = current_database()"
    )
    info = json.loads(raw)
    return locale_problems(
        str(encoding),
        str(info.get("datcollate")),
        str(info.get("datctype")),
        provider=str(info.get("datlocprovider") or "c"),
        provider_locale=info.get("datlocale") or info.get("daticulocale"),
    )
