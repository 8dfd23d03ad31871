-- Issue 19, the admin API for users and what it stands on.

-- Where each session was used from (Synapse's user_ips): one row per (access token, address,
-- user agent), written in batches by accounts/client_ips.py and swept after user_ips_max_age.
-- token_hash is the stored hash of the access token (never the token).
CREATE TABLE user_ips (
    user_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    device_id TEXT,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    PRIMARY KEY (token_hash, ip, user_agent)
);
CREATE INDEX user_ips_user ON user_ips (user_id, device_id);
CREATE INDEX user_ips_last_seen ON user_ips (last_seen);

-- The last use of each device (Synapse keeps these on its devices table too), for the client's
-- /devices and the admin devices list.
ALTER TABLE devices ADD COLUMN last_seen_ts BIGINT;
ALTER TABLE devices ADD COLUMN last_seen_ip TEXT;
ALTER TABLE devices ADD COLUMN last_seen_user_agent TEXT;

-- A shadow-banned user's events and invites are answered as accepted but never stored.
ALTER TABLE users ADD COLUMN shadow_banned BOOLEAN NOT NULL DEFAULT FALSE;

-- POST /_synapse/admin/v1/users/{u}/login: a token without a device, made by an admin
-- (puppeted_by), valid until valid_until_ms when given.
ALTER TABLE access_tokens ADD COLUMN valid_until_ms BIGINT;
ALTER TABLE access_tokens ADD COLUMN puppeted_by TEXT;

-- Per-user rate-limit overrides (Synapse's ratelimit_override): rc_message's rate and burst;
-- 0 for the rate exempts the user from every limiter that applies overrides.
CREATE TABLE ratelimit_override (
    user_id TEXT PRIMARY KEY,
    messages_per_second BIGINT NOT NULL,
    burst_count BIGINT NOT NULL
);

-- Per-user experimental features (Synapse's per_user_experimental_features).
CREATE TABLE per_user_experimental_features (
    user_id TEXT NOT NULL,
    feature TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, feature)
);

-- Registration tokens (Synapse's registration_tokens): uses_allowed NULL is unlimited,
-- expiry_time (ms) NULL never expires; pending counts registrations that have passed the token
-- stage but not finished, completed those that finished.
CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    pending BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

-- Which UI-auth registration session has used which token (one pending use each).
CREATE TABLE registration_token_sessions (
    session_id TEXT PRIMARY KEY,
    token TEXT NOT NULL
);

-- A suspended user (PUT /_synapse/admin/v1/suspend/{u}) may read but not send, join, invite,
-- create rooms or change their profile (Synapse's M_USER_SUSPENDED).
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;

-- Until when (ms) the user may replace their master cross-signing key without UIA
-- (POST /_synapse/admin/v1/users/{u}/_allow_cross_signing_replacement_without_uia).
ALTER TABLE users ADD COLUMN cross_signing_replaceable_before_ms BIGINT;

-- POST /_synapse/admin/v1/user/{u}/redact: one row per request, its progress for
-- GET /_synapse/admin/v1/user/redact_status/{id}. status: scheduled, active, complete, failed;
-- failed_redactions: JSON {event_id: reason}; instance_name: the process running it (a process
-- starting fails only its own previous run's and dead processes' unfinished requests).
CREATE TABLE user_redactions (
    redact_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    instance_name TEXT NOT NULL DEFAULT '',
    failed_redactions TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    created_ts BIGINT NOT NULL
);
