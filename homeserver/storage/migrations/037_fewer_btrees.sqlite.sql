-- Fewer B-trees written per event (issue 18). Every SQLite table with a TEXT or composite
-- primary key is two B-trees: the hidden-rowid table and the primary key's index. Each B-tree a
-- transaction touches costs at least one WAL frame at COMMIT, and updating or deleting an older
-- row (a room's joined servers, its forward extremities) writes a page of each. Small tables
-- every event writes become WITHOUT ROWID (the primary key's B-tree holds the row), and events
-- keys its rows by stream_ordering (the rowid), dropping the separate stream_ordering index.
-- Columns and their order, uniqueness, foreign keys and secondary indexes are unchanged;
-- PostgreSQL is untouched (037_fewer_btrees.postgres.sql). docs/performance.md, "Fourth pass",
-- has the figures.
--
-- event_edges and current_state_events stay rowid tables: their secondary indexes would carry
-- the whole primary key instead of a rowid, and their rows a room ID more, so the B-trees a
-- createRoom writes at random spots grow. Measured, that saved no WAL frame and cost 3-4 and
-- 7-11 more page reads per createRoom.
--
-- SQLite cannot convert a table in place: each is created anew, filled in key order (so the
-- new B-tree is written by appending, densely packed), the old one dropped (no trigger or view
-- names these tables, and none is the parent of a foreign key, so the DROP with foreign keys
-- on deletes nothing it should not), the new one renamed and its indexes recreated. This copies
-- every event: expect the start-up that applies it to take a while on a large database.

-- As the rowid, stream_ordering could not refuse a NULL (SQLite would pick the next rowid), but
-- persistence always allocates one.
CREATE TABLE events_new (
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    room_version TEXT NOT NULL,
    stream_ordering INTEGER PRIMARY KEY,
    topological_ordering BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    rejected_reason TEXT,
    outlier BOOLEAN NOT NULL DEFAULT FALSE,
    redacted BOOLEAN NOT NULL DEFAULT FALSE,
    soft_failed BOOLEAN NOT NULL DEFAULT FALSE,
    replaces_state TEXT
);
INSERT INTO events_new (
    event_id, room_id, room_version, stream_ordering, topological_ordering, type, state_key,
    sender, origin_server_ts, json, rejected_reason, outlier, redacted, soft_failed,
    replaces_state
)
SELECT
    event_id, room_id, room_version, stream_ordering, topological_ordering, type, state_key,
    sender, origin_server_ts, json, rejected_reason, outlier, redacted, soft_failed,
    replaces_state
FROM events ORDER BY stream_ordering;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topological ON events (room_id, topological_ordering, stream_ordering);
CREATE INDEX events_user_membership ON events (state_key, type, stream_ordering);

CREATE TABLE event_auth_new (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
) WITHOUT ROWID;
INSERT INTO event_auth_new (event_id, auth_id, room_id)
SELECT event_id, auth_id, room_id FROM event_auth ORDER BY event_id, auth_id;
DROP TABLE event_auth;
ALTER TABLE event_auth_new RENAME TO event_auth;

CREATE TABLE state_group_entries_new (
    state_group BIGINT NOT NULL REFERENCES state_groups (id),
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
) WITHOUT ROWID;
INSERT INTO state_group_entries_new (state_group, type, state_key, event_id)
SELECT state_group, type, state_key, event_id FROM state_group_entries
ORDER BY state_group, type, state_key;
DROP TABLE state_group_entries;
ALTER TABLE state_group_entries_new RENAME TO state_group_entries;

-- NOT NULL as on PostgreSQL: WITHOUT ROWID enforces it on a primary key either way, which the
-- rowid table, by an old SQLite quirk, did not.
CREATE TABLE event_to_state_groups_new (
    event_id TEXT NOT NULL PRIMARY KEY,
    state_group_before BIGINT NOT NULL REFERENCES state_groups (id),
    state_group_after BIGINT NOT NULL REFERENCES state_groups (id)
) WITHOUT ROWID;
INSERT INTO event_to_state_groups_new (event_id, state_group_before, state_group_after)
SELECT event_id, state_group_before, state_group_after FROM event_to_state_groups
ORDER BY event_id;
DROP TABLE event_to_state_groups;
ALTER TABLE event_to_state_groups_new RENAME TO event_to_state_groups;

CREATE TABLE event_forward_extremities_new (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
) WITHOUT ROWID;
INSERT INTO event_forward_extremities_new (room_id, event_id)
SELECT room_id, event_id FROM event_forward_extremities ORDER BY room_id, event_id;
DROP TABLE event_forward_extremities;
ALTER TABLE event_forward_extremities_new RENAME TO event_forward_extremities;

CREATE TABLE room_joined_servers_new (
    room_id TEXT NOT NULL,
    server_name TEXT NOT NULL,
    joined_members BIGINT NOT NULL,
    PRIMARY KEY (room_id, server_name)
) WITHOUT ROWID;
INSERT INTO room_joined_servers_new (room_id, server_name, joined_members)
SELECT room_id, server_name, joined_members FROM room_joined_servers
ORDER BY room_id, server_name;
DROP TABLE room_joined_servers;
ALTER TABLE room_joined_servers_new RENAME TO room_joined_servers;
