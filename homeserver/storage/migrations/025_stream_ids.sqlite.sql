-- Stream positions (homeserver/storage/stream_ids.py): SQLite has one writer at a time, so
-- every stream is a counter in stream_positions advanced inside the write transaction, the
-- events stream too (its position no longer comes from MAX(stream_ordering), which a purge
-- could lower).
INSERT INTO stream_positions (stream_name, position)
SELECT 'events', COALESCE(MAX(stream_ordering), 0) FROM events;
