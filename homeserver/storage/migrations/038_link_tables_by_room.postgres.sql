-- The auth and prev edges keyed by room first, as on SQLite (038_link_tables_by_room.sqlite.sql
-- says why): a new room's index entries sit together instead of one random index leaf per
-- event. Every read of these tables names the room.
ALTER TABLE event_auth DROP CONSTRAINT event_auth_pkey;
ALTER TABLE event_auth ADD PRIMARY KEY (room_id, event_id, auth_id);
ALTER TABLE event_edges DROP CONSTRAINT event_edges_pkey;
ALTER TABLE event_edges ADD PRIMARY KEY (room_id, event_id, prev_event_id);
DROP INDEX event_edges_prev;
CREATE INDEX event_edges_prev ON event_edges (room_id, prev_event_id);
