-- Accounts: profiles, user-interactive auth sessions and shared-secret registration nonces.
-- Sessions and nonces live in the database (not in one process's memory) so that a client may
-- talk to any process of a multi-process deployment between two steps (DESIGN.md §7).

-- Global profile of a local user; a missing row (or NULL column) means "not set".
CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id),
    displayname TEXT,
    avatar_url TEXT
);

-- One user-interactive auth session. operation names what it authorises ("register",
-- "delete_devices", "change_password") so a session cannot be replayed for another purpose;
-- user_id is the account being re-authenticated (NULL while registering).
CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    user_id TEXT,
    created_ts BIGINT NOT NULL
);
CREATE INDEX ui_auth_sessions_created ON ui_auth_sessions (created_ts);

-- Nonces handed out by GET /_synapse/admin/v1/register: single use, valid for 60 seconds.
CREATE TABLE registration_nonces (
    nonce TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL
);
CREATE INDEX registration_nonces_created ON registration_nonces (created_ts);
