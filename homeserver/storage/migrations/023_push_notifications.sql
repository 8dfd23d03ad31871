-- Notifications and pushers (client-server API "Push notifications").
--
-- Push rules are evaluated after an event commits, by one background step that walks the events
-- stream: 'push_evaluated' is the stream ordering it has evaluated up to. The actions it finds
-- and this position are written in one transaction, so every event is evaluated exactly once,
-- across restarts and processes. It starts at the newest event: what was stored before this
-- migration is not notified.
INSERT INTO stream_positions (stream_name, position)
SELECT 'push_evaluated', COALESCE(MAX(stream_ordering), 0) FROM events;

-- One row per (event, local user) whose rules said "notify". thread_id: the thread root of an
-- m.thread event, else 'main'. Unread counts are the rows after the user's read receipt.
CREATE TABLE event_push_actions (
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    highlight BOOLEAN NOT NULL,
    actions TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_user_room ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_user_stream ON event_push_actions (user_id, stream_ordering);

-- Pushers (POST /pushers/set), unique per (app_id, pushkey, user_id) as in Synapse. data is the
-- client's JSON; failing_since / retry_* are the delivery backoff, kept here so that a restart
-- honours it.
CREATE TABLE pushers (
    id {{id_pk}},
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    pushkey_ts BIGINT NOT NULL,
    failing_since BIGINT,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval_ms BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX pushers_key ON pushers (app_id, pushkey, user_id);
CREATE INDEX pushers_user ON pushers (user_id);

-- The durable queue of notifications to send to a pusher's gateway, written in the same
-- transaction as the actions; a row is deleted once the gateway has answered for it.
CREATE TABLE push_outbox (
    id {{id_pk}},
    pusher_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX push_outbox_pusher ON push_outbox (pusher_id, id);
