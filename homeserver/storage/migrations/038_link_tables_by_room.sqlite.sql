-- The auth and prev edges keyed by room first (issue 18). Keyed by event ID, a hash, each new
-- event's rows went to a random leaf of each B-tree: an upgrade's 56 events dirtied ~50 leaves
-- of event_auth and ~50 of the edges' two B-trees, each one WAL frame at COMMIT. Room first,
-- a new room's rows (a createRoom, an upgrade's new room) sit together in a few leaves; an
-- event of an existing room still lands among its room's rows. Every read of these tables
-- names the room (auth chains stay in one room; extremities are per room), so no index by
-- event ID alone is needed. Both are WITHOUT ROWID now (037 left event_edges a rowid table):
-- the key holds every column, so the primary key's B-tree is the whole table, and the edges
-- keep one secondary index, by (room_id, prev_event_id).
--
-- Rebuilt by copying in key order, as 037 did: expect the start-up that applies it to take a
-- while on a large database.

CREATE TABLE event_auth_new (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id, auth_id)
) WITHOUT ROWID;
INSERT INTO event_auth_new (event_id, auth_id, room_id)
SELECT event_id, auth_id, room_id FROM event_auth ORDER BY room_id, event_id, auth_id;
DROP TABLE event_auth;
ALTER TABLE event_auth_new RENAME TO event_auth;

CREATE TABLE event_edges_new (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id, prev_event_id)
) WITHOUT ROWID;
INSERT INTO event_edges_new (event_id, prev_event_id, room_id)
SELECT event_id, prev_event_id, room_id FROM event_edges ORDER BY room_id, event_id, prev_event_id;
DROP TABLE event_edges;
ALTER TABLE event_edges_new RENAME TO event_edges;
CREATE INDEX event_edges_prev ON event_edges (room_id, prev_event_id);
