-- Server-side key backup (spec "Server-side key backups", /room_keys/*): each user's backup
-- versions and the room keys stored in each. session_data is encrypted by the client to a key
-- the server never sees; the server keeps it as canonical JSON and only compares the metadata
-- (is_verified, first_message_index, forwarded_count) to keep the better copy of a key.

-- The last version number given to each user: numbers are never reused, so a client still
-- holding a deleted version cannot write into a newer backup. Every write to a user's backups
-- locks this row first, which serialises them per user.
CREATE TABLE e2e_room_keys_users (
    user_id TEXT NOT NULL PRIMARY KEY,
    last_version BIGINT NOT NULL
);

-- Live backup versions; the highest is the current one (the only one keys may be uploaded to).
-- etag grows whenever the keys of the version change.
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BOOLEAN NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
-- An upload looks up the sessions it carries, across whatever rooms they are in.
CREATE INDEX e2e_room_keys_session ON e2e_room_keys (user_id, version, session_id);
