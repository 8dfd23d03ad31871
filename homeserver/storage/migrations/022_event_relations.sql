-- Event relations (content."m.relates_to" with rel_type and event_id): one row per accepted
-- event that relates to another, written at persistence. Read by /relations, /threads and
-- the bundled aggregations (edits, thread summaries, references) in unsigned."m.relations".
-- A redacted relation drops out because readers join events and skip redacted rows. Events
-- stored before this migration have no row (as replaces_state, no backfill).
CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    room_id TEXT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to_id, relation_type);
-- /threads lists a room's thread roots.
CREATE INDEX event_relations_room_type ON event_relations (room_id, relation_type);
