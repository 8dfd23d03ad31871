-- Our users following an upgrade made by another server (issue 14): one row per local user who
-- was joined to the old room when its tombstone arrived over federation, written in the
-- tombstone's own transaction and worked off by homeserver/federation/upgrade_follows.py.
-- state: queued (due at next_attempt_ts) → running (claimed under ``claim`` until
-- ``claimed_until``; an expired claim is taken over) → done | pending (the replacement refused
-- the join: queued again when an invite for the user arrives) | skipped (opted out meanwhile) |
-- failed (no server could ever let us in, e.g. an unsupported room version).
CREATE TABLE remote_upgrade_follows (
    old_room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    new_room_id TEXT NOT NULL,
    via TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_interval_ms BIGINT NOT NULL DEFAULT 0,
    next_attempt_ts BIGINT NOT NULL,
    claim TEXT,
    claimed_until BIGINT,
    last_error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    PRIMARY KEY (old_room_id, user_id)
);
-- The worker's look-up of due work, without a scan of finished rows.
CREATE INDEX remote_upgrade_follows_due ON remote_upgrade_follows (next_attempt_ts)
    WHERE state IN ('queued', 'running');
-- An invite arriving for a user to a replacement room.
CREATE INDEX remote_upgrade_follows_new_room ON remote_upgrade_follows (new_room_id, user_id);
