-- POST /_synapse/admin/v1/purge_history/{roomId}: one row per request (Synapse keeps them in its
-- scheduled-tasks table), so GET /purge_history_status/{purgeId} survives a restart and an
-- unfinished purge resumes at start-up. params is JSON (the cut-off depth, delete_local_events);
-- deleted counts the events removed. Kept when the room itself is purged (storage/room_purge.py).
CREATE TABLE purge_history (
    purge_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'active', 'complete', 'failed')),
    params TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX purge_history_room ON purge_history (room_id, created_ts);
