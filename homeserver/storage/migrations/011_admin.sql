-- The admin API (/_synapse/admin): blocked rooms, room deletions and erased users.

-- Rooms an admin has blocked: joins and invites are refused. Kept when the room is purged (the
-- block must outlive the room's data, as in Synapse), so no foreign key to rooms.
CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- DELETE /_synapse/admin/v2/rooms/{roomId}: one row per request, so its status survives a
-- restart and the purge of the room it describes (no foreign key to rooms either). status is
-- Synapse's task status; params and result are JSON (result is Synapse's shutdown_room object).
CREATE TABLE room_deletions (
    delete_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'active', 'complete', 'failed')),
    params TEXT NOT NULL,
    result TEXT NOT NULL,
    error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX room_deletions_room ON room_deletions (room_id, created_ts);

-- Users deactivated with erase: true (Synapse's erased_users).
CREATE TABLE erased_users (
    user_id TEXT PRIMARY KEY
);
