-- Full-text search of room events (POST /search): one row per searchable event, keyed by the
-- field it was indexed under (content.body of m.room.message, content.name of m.room.name,
-- content.topic of m.room.topic, as Synapse). Only accepted timeline events are indexed, and a
-- redaction deletes the row. The PostgreSQL variant keeps a tsvector under a GIN index instead.
-- id is the event's stream ordering (unique, and the FTS5 rowid), so "newest first" is the
-- index's own rowid order: a page of recent matches is read straight off the index.
CREATE TABLE event_search (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_search_room_stream ON event_search (room_id, stream_ordering);
-- An external-content FTS5 index over event_search.value (porter stemming, as PostgreSQL's
-- 'english' configuration stems); the triggers keep it in step with the table, so deleting a
-- row (a redaction, a room purge) also takes it out of the index.
CREATE VIRTUAL TABLE event_search_fts USING fts5(
    value, content='event_search', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER event_search_insert AFTER INSERT ON event_search BEGIN INSERT INTO event_search_fts (rowid, value) VALUES (new.id, new.value); END;
CREATE TRIGGER event_search_delete AFTER DELETE ON event_search BEGIN INSERT INTO event_search_fts (event_search_fts, rowid, value) VALUES ('delete', old.id, old.value); END;
-- Events stored before this migration.
INSERT INTO event_search (id, event_id, room_id, sender, type, key, value, stream_ordering, origin_server_ts)
SELECT stream_ordering, event_id, room_id, sender, type,
    CASE type WHEN 'm.room.message' THEN 'content.body' WHEN 'm.room.name' THEN 'content.name' ELSE 'content.topic' END,
    json_extract(json, CASE type WHEN 'm.room.message' THEN '$.content.body' WHEN 'm.room.name' THEN '$.content.name' ELSE '$.content.topic' END),
    stream_ordering, origin_server_ts
FROM events
WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic')
    AND outlier = FALSE AND rejected_reason IS NULL AND soft_failed = FALSE AND redacted = FALSE
    AND json_type(json, CASE type WHEN 'm.room.message' THEN '$.content.body' WHEN 'm.room.name' THEN '$.content.name' ELSE '$.content.topic' END) = 'text';
