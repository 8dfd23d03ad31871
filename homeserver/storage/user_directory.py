"""The user directory: who ``POST /user_directory/search`` may find, and under which name.

One ``user_directory`` row per findable user: every local user (name and avatar from their
global profile, written with the profile) and every remote user while they are joined to a room
we know (name and avatar from their join in a publicly viewable room only: a nickname set in a
private room must not be shown to searchers outside it, as Synapse keeps it). The rows follow the
rooms' current state in the same transaction that moves it (:func:`on_current_state_txn`, called
by the event persister), so the directory can never lag behind joins, leaves and profile
changes.

Who may see whom is decided at search time: with ``search_all_users`` every user but the
searcher; otherwise (Synapse's default) the users joined to a publicly viewable room (join rule
``public`` or history ``world_readable``, kept in ``user_directory_public_rooms``) and the users
who share a room with the searcher. Deactivated users are never found.

Matching is engine-neutral: ``search_text`` holds the user's words (display name, localpart,
server name) casefolded, each preceded by a space, and every word of the search term must be the
prefix of one of them (``LIKE '% word%'``), as Synapse's prefix full-text match does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import parse_json
from homeserver.events.event import Event
from homeserver.events.state_keys import (
    HISTORY_VISIBILITY,
    HISTORY_VISIBILITY_KEY,
    JOIN_RULES,
    JOIN_RULES_KEY,
    MEMBER,
    StateKey,
)
from homeserver.storage.database import Database, Transaction, in_chunks, placeholders

_WORD = re.compile(r"\w+")
#: The longest display name / avatar URL shown (Synapse's profile limits); a remote user's longer
#: (or non-string) value is shown as none.
MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000


#: IDs per ``IN (...)`` list: a room joined over federation may bring thousands of members,
#: more than either engine takes as parameters of one statement.
_CHUNK = 500


def words(text: str) -> list[str]:
    """The casefolded words of ``text`` (letters, digits and ``_`` in any script)."""
    return _WORD.findall(text.casefold())


def search_text(user_id: str, display_name: str | None) -> str:
    """The ``search_text`` of a user: each word preceded by a space, and a trailing space (so a
    whole word is ``'% word %'``)."""
    found = words(display_name or "") + words(user_id)
    return "".join(f" {w}" for w in found) + " "


def _like_escape(word: str) -> str:
    # Words hold only \w characters; of those only "_" is special to LIKE.
    return word.replace("\\", "\\\\").replace("_", "\\_")


def _shown(value: Any, max_length: int) -> str | None:
    """A profile value from an event as we would show it: a string of sane length without NUL
    (which PostgreSQL text cannot hold), else none."""
    if not isinstance(value, str) or not value or len(value) > max_length or "\x00" in value:
        return None
    return value


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    user_id: str
    display_name: str | None
    avatar_url: str | None

    def to_json(self) -> dict[str, str]:
        out = {"user_id": self.user_id}
        if self.display_name is not None:
            out["display_name"] = self.display_name
        if self.avatar_url is not None:
            out["avatar_url"] = self.avatar_url
        return out


@dataclass(frozen=True, slots=True)
class DirectorySearch:
    searcher: str
    #: the search term's words (at least one); each must prefix a word of the user.
    terms: Sequence[str]
    limit: int
    search_all_users: bool = False
    prefer_local_users: bool = False
    exclude_remote_users: bool = False


async def _upsert_many_txn(
    txn: Transaction,
    rows: Sequence[tuple[str, str | None, str | None]],
    *,
    replace: bool = True,
) -> None:
    """Rows (user ID, display name, avatar URL); ``replace``: over an existing row, else it is
    kept."""
    conflict = (
        "DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url,"
        " search_text = excluded.search_text"
        if replace
        else "DO NOTHING"
    )
    await txn.executemany(
        "INSERT INTO user_directory (user_id, display_name, avatar_url, search_text)"
        f" VALUES (?, ?, ?, ?) ON CONFLICT (user_id) {conflict}",
        [(u, n, a, search_text(u, n)) for u, n, a in rows],
    )


async def add_local_user_txn(txn: Transaction, user_id: str) -> None:
    """A new local user, findable by their user ID until their profile says more."""
    await _upsert_many_txn(txn, [(user_id, None, None)], replace=False)


async def refresh_local_user_txn(txn: Transaction, user_id: str) -> None:
    """A local user's row from their global profile (after it changed, in its transaction)."""
    row = await txn.fetchone(
        "SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", user_id
    )
    display_name, avatar_url = (None, None) if row is None else (row[0], row[1])
    await _upsert_many_txn(txn, [(user_id, display_name, avatar_url)])


def _publicly_viewable(join_rule: Any, history_visibility: Any) -> bool:
    return join_rule == "public" or history_visibility == "world_readable"


async def _contents_txn(
    txn: Transaction, event_ids: Sequence[str], known: Mapping[str, Event]
) -> dict[str, dict[str, Any]]:
    """Event ID → content, from ``known`` events or else the stored JSON."""
    out = {eid: known[eid].content for eid in event_ids if eid in known}
    missing = [eid for eid in event_ids if eid not in out]
    for chunk in in_chunks(missing, _CHUNK):
        rows = await txn.fetchall(
            f"SELECT event_id, json FROM events WHERE event_id IN ({placeholders(len(chunk))})",
            *chunk,
        )
        for event_id, json_text in rows:
            content = parse_json(json_text).get("content")
            out[event_id] = content if isinstance(content, dict) else {}
    return out


async def _refresh_publicity_txn(
    txn: Transaction, room_id: str, known: Mapping[str, Event]
) -> bool:
    """Record whether the room is publicly viewable now (from its current state); returns it."""
    rows = await txn.fetchall(
        "SELECT type, event_id FROM current_state_events"
        " WHERE room_id = ? AND type IN (?, ?) AND state_key = ''",
        room_id,
        JOIN_RULES,
        HISTORY_VISIBILITY,
    )
    by_type = {r[0]: r[1] for r in rows}
    contents = await _contents_txn(txn, list(by_type.values()), known)
    join_rule = contents.get(by_type.get(JOIN_RULES, ""), {}).get("join_rule")
    visibility = contents.get(by_type.get(HISTORY_VISIBILITY, ""), {}).get("history_visibility")
    public = _publicly_viewable(join_rule, visibility)
    if public:
        await txn.execute(
            "INSERT INTO user_directory_public_rooms (room_id) VALUES (?)"
            " ON CONFLICT (room_id) DO NOTHING",
            room_id,
        )
    else:
        await txn.execute("DELETE FROM user_directory_public_rooms WHERE room_id = ?", room_id)
    return public


async def on_current_state_txn(
    txn: Transaction,
    room_id: str,
    added: Mapping[StateKey, str],
    removed: Sequence[StateKey],
    known: Mapping[str, Event],
) -> None:
    """Follow a change of the room's current state (already written): the room's publicity and
    remote members' rows (joined: present; joined to no room left: gone)."""
    changed = set(added) | set(removed)
    if JOIN_RULES_KEY in changed or HISTORY_VISIBILITY_KEY in changed:
        public = await _refresh_publicity_txn(txn, room_id, known)
    else:
        public = None
    members = {sk: eid for (t, sk), eid in added.items() if t == MEMBER}
    gone = [sk for t, sk in removed if t == MEMBER]
    if not members and not gone:
        return
    users = sorted(set(members) | set(gone))
    local: set[str] = set()
    for chunk in in_chunks(users, _CHUNK):
        rows = await txn.fetchall(
            f"SELECT user_id FROM users WHERE user_id IN ({placeholders(len(chunk))})", *chunk
        )
        local.update(r[0] for r in rows)
    contents = await _contents_txn(txn, list(members.values()), known)
    joined = {
        user_id: contents.get(eid, {})
        for user_id, eid in members.items()
        if contents.get(eid, {}).get("membership") == "join"
    }
    if public is None and any(user_id not in local for user_id in joined):
        public = (
            await txn.fetchval(
                "SELECT 1 FROM user_directory_public_rooms WHERE room_id = ?", room_id
            )
            is not None
        )
    rows = [
        (
            user_id,
            _shown(content.get("displayname"), MAX_DISPLAYNAME_LENGTH) if public else None,
            _shown(content.get("avatar_url"), MAX_AVATAR_URL_LENGTH) if public else None,
        )
        # A local user's row follows their profile, made with the account.
        for user_id, content in joined.items()
        if user_id not in local
    ]
    # In one order: another process persisting another room's state may write the same
    # remote users' rows at once.
    rows.sort(key=lambda row: row[0])
    if rows:
        await _upsert_many_txn(txn, rows, replace=bool(public))
    departed = [u for u in users if u not in local and u not in joined]
    for chunk in in_chunks(departed, _CHUNK):
        # A remote user stays findable while joined to any room we know.
        await txn.execute(
            f"DELETE FROM user_directory WHERE user_id IN ({placeholders(len(chunk))})"
            " AND NOT EXISTS (SELECT 1 FROM current_state_events c"
            " WHERE c.state_key = user_directory.user_id AND c.type = ?"
            " AND c.membership = 'join')",
            *chunk,
            MEMBER,
        )


class UserDirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(self, query: DirectorySearch) -> tuple[list[DirectoryEntry], bool]:
        """The best ``query.limit`` matches the searcher may see, and whether there were
        more."""
        matching = " AND ".join("search_text LIKE ? ESCAPE '\\'" for _ in query.terms)
        match_args = [f"% {_like_escape(term)}%" for term in query.terms]
        where = ["(u.deactivated IS NULL OR u.deactivated = FALSE)"]
        args: list[Any] = []
        if query.exclude_remote_users:
            where.append("u.user_id IS NOT NULL")
        if query.search_all_users:
            where.append("d.user_id <> ?")
            args.append(query.searcher)
        else:
            # Correlated, so only the matching rows are looked up (by index: a user's joined
            # rooms, the searcher's rooms' member keys), not every member of every room.
            where.append(
                "(EXISTS (SELECT 1 FROM current_state_events c"
                " JOIN user_directory_public_rooms p ON p.room_id = c.room_id"
                " WHERE c.state_key = d.user_id AND c.type = 'm.room.member'"
                " AND c.membership = 'join')"
                " OR (d.user_id <> ? AND EXISTS (SELECT 1 FROM current_state_events m"
                " JOIN current_state_events o ON o.room_id = m.room_id"
                " AND o.type = 'm.room.member' AND o.state_key = d.user_id"
                " AND o.membership = 'join'"
                " WHERE m.state_key = ? AND m.type = 'm.room.member'"
                " AND m.membership = 'join')))"
            )
            args += [query.searcher, query.searcher]
        phrase = _like_escape(" ".join(query.terms))
        order = [
            # Whole words first, then the term as the start of a run of words, then the rest.
            "CASE WHEN d.search_text LIKE ? ESCAPE '\\' THEN 0"
            " WHEN d.search_text LIKE ? ESCAPE '\\' THEN 1 ELSE 2 END",
            "CASE WHEN d.display_name IS NULL THEN 1 ELSE 0 END",
            "CASE WHEN d.avatar_url IS NULL THEN 1 ELSE 0 END",
            "d.user_id",
        ]
        order_args: list[Any] = [f"% {phrase} %", f"% {phrase}%"]
        if query.prefer_local_users:
            order.insert(0, "CASE WHEN u.user_id IS NULL THEN 1 ELSE 0 END")
        # The words are matched first, in a materialised step: PostgreSQL would otherwise
        # price the visibility look-ups for every row of the directory, and at that price
        # compile the query (JIT), which costs more than running it.
        rows = await self.db.fetchall(
            "WITH d AS MATERIALIZED (SELECT user_id, display_name, avatar_url, search_text"
            f" FROM user_directory WHERE {matching})"
            " SELECT d.user_id, d.display_name, d.avatar_url FROM d"
            " LEFT JOIN users u ON u.user_id = d.user_id"
            f" WHERE {' AND '.join(where)} ORDER BY {', '.join(order)} LIMIT ?",
            *match_args,
            *args,
            *order_args,
            query.limit + 1,
        )
        entries = [DirectoryEntry(r[0], r[1], r[2]) for r in rows[: query.limit]]
        return entries, len(rows) > query.limit

    async def rebuild_if_needed(self) -> bool:
        """Rebuild once after the migration that made the directory (the users and rooms that
        existed before it); whether it ran."""
        if await self.db.fetchval("SELECT 1 FROM user_directory_rebuild") is None:
            return False
        async with self.db.transaction("rebuild_user_directory_once") as txn:
            # Processes starting together over one database: the first rebuilds, the others
            # wait on the marker's row and then find it gone.
            if not await txn.lock_row("user_directory_rebuild", "needed", True):
                return False
            await self._rebuild_txn(txn)
        return True

    async def rebuild(self) -> None:
        """The whole directory anew from users, profiles and the rooms' current state."""
        async with self.db.transaction("rebuild_user_directory") as txn:
            await self._rebuild_txn(txn)

    async def _rebuild_txn(self, txn: Transaction) -> None:
        await txn.execute("DELETE FROM user_directory")
        await txn.execute("DELETE FROM user_directory_public_rooms")
        local = await txn.fetchall(
            "SELECT u.user_id, p.displayname, p.avatar_url FROM users u"
            " LEFT JOIN profiles p ON p.user_id = u.user_id"
        )
        await txn.executemany(
            "INSERT INTO user_directory (user_id, display_name, avatar_url, search_text)"
            " VALUES (?, ?, ?, ?)",
            [(r[0], r[1], r[2], search_text(r[0], r[1])) for r in local],
        )
        settings: dict[str, dict[str, Any]] = {}
        for room_id, _type, json_text in await txn.fetchall(
            "SELECT c.room_id, c.type, e.json FROM current_state_events c"
            " JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type IN (?, ?) AND c.state_key = ''",
            JOIN_RULES,
            HISTORY_VISIBILITY,
        ):
            content = parse_json(json_text).get("content")
            if isinstance(content, dict):
                settings.setdefault(room_id, {}).update(content)
        public = {
            room_id
            for room_id, s in settings.items()
            if _publicly_viewable(s.get("join_rule"), s.get("history_visibility"))
        }
        await txn.executemany(
            "INSERT INTO user_directory_public_rooms (room_id) VALUES (?)",
            [(room_id,) for room_id in sorted(public)],
        )
        remote: dict[str, tuple[str | None, str | None]] = {}
        for room_id, user_id, json_text in await txn.fetchall(
            "SELECT c.room_id, c.state_key, e.json FROM current_state_events c"
            " JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type = ? AND c.membership = 'join'"
            " AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = c.state_key)",
            MEMBER,
        ):
            content = parse_json(json_text).get("content")
            if room_id in public and isinstance(content, dict):
                remote[user_id] = (
                    _shown(content.get("displayname"), MAX_DISPLAYNAME_LENGTH),
                    _shown(content.get("avatar_url"), MAX_AVATAR_URL_LENGTH),
                )
            else:
                remote.setdefault(user_id, (None, None))
        await txn.executemany(
            "INSERT INTO user_directory (user_id, display_name, avatar_url, search_text)"
            " VALUES (?, ?, ?, ?)",
            [(u, n, a, search_text(u, n)) for u, (n, a) in sorted(remote.items())],
        )
        await txn.execute("DELETE FROM user_directory_rebuild")
