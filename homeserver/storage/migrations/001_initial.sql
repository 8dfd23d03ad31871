-- The initial schema, one template for both engines ({{id_pk}} and {{bytes}} are filled in per
-- engine by homeserver/storage/migrate.py). Flags are BOOLEAN: SQLite stores 0/1, PostgreSQL a
-- real boolean; the stores normalise with bool() on read.

-- Rooms and their lifecycle (DESIGN.md §3.2). current_state_group is the state group whose
-- content current_state_events mirrors; the sender builds on it.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    is_public BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'upgrading', 'tombstoned')),
    upgrade_lock_holder TEXT,
    upgrade_lock_expires_ts BIGINT,
    replacement_room_id TEXT,
    current_state_group BIGINT
);
CREATE INDEX rooms_public ON rooms (is_public);

CREATE TABLE room_lifecycle_transitions (
    id {{id_pk}},
    room_id TEXT NOT NULL REFERENCES rooms (room_id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor TEXT,
    reason TEXT,
    ts BIGINT NOT NULL
);
CREATE INDEX room_lifecycle_transitions_room ON room_lifecycle_transitions (room_id, id);

-- Events. stream_ordering is allocated under a server-wide lock at commit time, so it grows in
-- commit order (readers never see a lower position appear later). The room version is kept per
-- event so an outlier from a room we have no row for can still be parsed.
CREATE TABLE events (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    room_version TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL UNIQUE,
    topological_ordering BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    rejected_reason TEXT,
    outlier BOOLEAN NOT NULL DEFAULT FALSE,
    redacted BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topological ON events (room_id, topological_ordering, stream_ordering);

CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (event_id, auth_id)
);

-- State groups: a group is either a snapshot (prev_state_group NULL, every entry stored) or a
-- delta against prev_state_group. chain_length counts delta links down to the snapshot, so the
-- writer knows when to start a new snapshot and readers walk a bounded chain. A delta entry with
-- event_id NULL removes that key (possible after state resolution).
CREATE TABLE state_groups (
    id {{id_pk}},
    room_id TEXT NOT NULL,
    event_id TEXT,
    prev_state_group BIGINT REFERENCES state_groups (id),
    chain_length INTEGER NOT NULL
);
CREATE INDEX state_groups_room ON state_groups (room_id);

CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL REFERENCES state_groups (id),
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
);

-- The state before and after each non-outlier event (equal for non-state and rejected events).
CREATE TABLE event_to_state_groups (
    event_id TEXT PRIMARY KEY,
    state_group_before BIGINT NOT NULL REFERENCES state_groups (id),
    state_group_after BIGINT NOT NULL REFERENCES state_groups (id)
);

CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_events_member ON current_state_events (state_key, type, membership);

CREATE TABLE event_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Accounts. Access tokens are stored only as SHA-256 hashes (DESIGN.md §4).
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts BIGINT NOT NULL,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE devices (
    user_id TEXT NOT NULL REFERENCES users (user_id),
    device_id TEXT NOT NULL,
    display_name TEXT,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id),
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    last_used BIGINT
);
CREATE INDEX access_tokens_user ON access_tokens (user_id, device_id);

-- Remote servers' signing keys.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key {{bytes}} NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- Room aliases (moved in the same transaction as an upgrade).
CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Work for other servers, written in the same transaction as the event (DESIGN.md §4).
CREATE TABLE federation_outbox (
    id {{id_pk}},
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ts BIGINT NOT NULL
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, id);
CREATE INDEX federation_outbox_due ON federation_outbox (next_attempt_ts);
