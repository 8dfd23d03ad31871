-- Completed room upgrades: which room replaced which, by whose request. Written in the upgrade's
-- own transaction, so a repeated request by the same user finds its answer here for ever (not in
-- a cache that expires), and the admin API can show who upgraded a room and when.
CREATE TABLE room_upgrades (
    old_room_id TEXT PRIMARY KEY REFERENCES rooms (room_id),
    new_room_id TEXT NOT NULL REFERENCES rooms (room_id),
    upgrader TEXT NOT NULL,
    new_version TEXT NOT NULL,
    ts BIGINT NOT NULL
);
