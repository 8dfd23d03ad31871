-- Full-text search of room events (POST /search): one row per searchable event, keyed by the
-- field it was indexed under (content.body of m.room.message, content.name of m.room.name,
-- content.topic of m.room.topic, as Synapse), its text as a tsvector ('english', as Synapse)
-- under a GIN index. Only accepted timeline events are indexed, and a redaction deletes the
-- row. The SQLite variant keeps an FTS5 index instead.
CREATE TABLE event_search (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    vector TSVECTOR NOT NULL,
    stream_ordering BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL
);
CREATE INDEX event_search_fts ON event_search USING GIN (vector);
CREATE INDEX event_search_room_stream ON event_search (room_id, stream_ordering);
-- Events stored before this migration. PostgreSQL text cannot hold NUL: an event whose JSON
-- escapes one is left out rather than failing the migration.
INSERT INTO event_search (event_id, room_id, sender, type, key, vector, stream_ordering, origin_server_ts)
SELECT event_id, room_id, sender, type, 'content.' || field,
    to_tsvector('english', json::json -> 'content' ->> field), stream_ordering, origin_server_ts
FROM (
    SELECT *, CASE type WHEN 'm.room.message' THEN 'body' WHEN 'm.room.name' THEN 'name' ELSE 'topic' END AS field
    FROM events
    WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic')
        AND outlier = FALSE AND rejected_reason IS NULL AND soft_failed = FALSE AND redacted = FALSE
        AND json NOT LIKE '%\\u0000%'
) AS searchable
WHERE json_typeof(json::json -> 'content' -> field) = 'string';
