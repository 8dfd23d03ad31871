-- Using rooms from the client API: idempotent sends, forgotten rooms, applied redactions.

-- Transaction IDs of client sends (PUT .../send/{type}/{txnId}, .../redact/{id}/{txnId}), so a
-- retried request returns the event it already created. The scope is the requester's device, or
-- the access token's hash for a token without a device; endpoint is 'send' or 'redact' (the
-- spec scopes a transaction ID to one device and one endpoint).
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    room_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, scope, room_id, endpoint, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

-- Rooms a user has forgotten after leaving (hidden from /sync; cleared when they come back).
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    forgotten_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- Redaction events and their targets, so a redacted event can be served with
-- unsigned.redacted_because. The target's events.redacted flag says whether it applied.
CREATE TABLE redactions (
    event_id TEXT PRIMARY KEY,
    redacts TEXT NOT NULL,
    room_id TEXT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts);
