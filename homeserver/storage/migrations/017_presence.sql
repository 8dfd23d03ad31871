-- Presence (m.presence): the newest state of each user we know, local or remote, stamped with a
-- position on the presence stream so /sync sends only what moved since a token. Typing
-- notifications are not stored (they live a few seconds, in memory, as in Synapse).
INSERT INTO stream_positions (stream_name, position) VALUES ('presence', 0);

-- state: online, unavailable or offline. last_active_ts: the user's last activity (0: never).
-- last_federation_update_ts: when a remote user's server last told us (remote states time out).
CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    last_federation_update_ts BIGINT NOT NULL,
    currently_active BOOLEAN NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);
-- The timeout sweep reads the users who are not offline.
CREATE INDEX presence_state ON presence (state);
