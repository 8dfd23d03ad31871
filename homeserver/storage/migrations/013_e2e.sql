-- The server side of end-to-end encryption: keys of devices (local ones uploaded here, remote
-- ones cached from their servers), to-device messages waiting for their device, and the stream
-- of device-list changes behind /sync's device_lists and /keys/changes. The server stores and
-- routes keys; it never holds anything that decrypts a message.

-- Two more counters in stream_positions (see 005): to-device messages and device-list changes.
INSERT INTO stream_positions (stream_name, position) VALUES ('to_device', 0);
INSERT INTO stream_positions (stream_name, position) VALUES ('device_lists', 0);

-- A device's identity keys as the device signed them (canonical JSON). Local devices only;
-- remote devices live in remote_device_lists.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys, each claimed at most once (the claim deletes the row in its transaction).
-- ts orders the claim: the oldest key of an algorithm goes first, as in Synapse.
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- At most one fallback key per (device, algorithm); handed out when the one-time keys run out,
-- and marked used (it stays claimable until the device replaces it).
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys (key_type master, self_signing or user_signing) of local users, and the
-- master and self-signing keys of remote users as their servers sent them.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload, merged into the target key when it is
-- queried: target_key_id is a device ID or a cross-signing public key (unpadded base64).
CREATE TABLE e2e_cross_signing_signatures (
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (signer_user_id, signer_key_id, target_user_id, target_key_id)
);
CREATE INDEX e2e_cross_signing_signatures_target
    ON e2e_cross_signing_signatures (target_user_id, target_key_id);

-- One row per device whose keys changed (device_id '' for a change of the cross-signing keys),
-- at a position of the device_lists stream; for local users and for remote users whose
-- server told us. /sync and /keys/changes report the users with rows in (since, now].
CREATE TABLE device_list_changes (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (stream_id, user_id, device_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id);

-- Remote users' devices as their server last described them (keys and display name, the
-- entry of GET /_matrix/federation/v1/user/devices), and the stream_id that description is at.
-- A user with a row in remote_device_list_positions is tracked: queries for them are answered
-- from here until stale is set (a gap in the updates their server sent).
CREATE TABLE remote_device_lists (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE remote_device_list_positions (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    stale BOOLEAN NOT NULL DEFAULT FALSE
);

-- To-device messages waiting for a local device, in the to_device stream's order. A message is
-- deleted when the device syncs with a token past it (it has been received).
CREATE TABLE device_inbox (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);

-- PUT /sendToDevice transaction IDs already handled, per sending device: a retried request
-- delivers nothing twice.
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- m.direct_to_device EDUs already delivered, by (origin, message_id): a resent transaction
-- delivers nothing twice.
CREATE TABLE received_to_device_messages (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX received_to_device_messages_ts ON received_to_device_messages (ts);
