-- The federation sender's durable state (DESIGN.md §4).
--
-- Per-destination backoff, as Synapse's destinations table: failure_ts is when the destination
-- started failing (NULL while it is healthy), retry_last_ts the last failed attempt and
-- retry_interval_ms the wait after it; the destination is due again at
-- retry_last_ts + retry_interval_ms. Kept in the database so a restart honours the backoff.
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    failure_ts BIGINT,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval_ms BIGINT NOT NULL DEFAULT 0
);

-- The transaction an outbox entry was put in (NULL: not sent yet). A transaction is retried
-- with the same ID and the same entries until the destination accepts it, across restarts too;
-- txn_ts is its origin_server_ts. The entry's kind ("pdu", "edu", "invite") is in its payload.
ALTER TABLE federation_outbox ADD COLUMN txn_id TEXT;
ALTER TABLE federation_outbox ADD COLUMN txn_ts BIGINT;
