-- Receiving events over federation.
--
-- A soft-failed event (spec: server-server API, "Soft failure") passed the auth checks against
-- its auth events and the state before it, but not against the room's current state: it is
-- stored with state groups and takes part in state resolution, but it is never a forward
-- extremity, never shown to clients and never used as a prev event.
ALTER TABLE events ADD COLUMN soft_failed BOOLEAN NOT NULL DEFAULT FALSE;

-- Answers to PUT /_matrix/federation/v1/send/{txnId}, so a retried transaction (same origin and
-- txnId) gets the same answer, across a restart too. Old rows are pruned by received_ts.
CREATE TABLE federation_received_transactions (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_received_transactions_ts ON federation_received_transactions (received_ts);
