-- Room upgrades that failed on the server's side (an internal error, or the old room's state kept
-- changing until the retries ran out), recorded from the ``room.upgrade.failed`` domain event so
-- the admin API can list them after a restart. Refusals of a client's request (forbidden,
-- unsupported version, in progress …) are not recorded: anyone could fill the table with them.
-- No foreign key to rooms: a failure may name a room that is gone (or was never stored).
CREATE TABLE room_upgrade_failures (
    id {{id_pk}},
    room_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE INDEX room_upgrade_failures_ts ON room_upgrade_failures (ts);

-- Rooms left ``upgrading`` (the admin API's stuck list, start-up recovery) without a scan of
-- every room.
CREATE INDEX rooms_upgrading ON rooms (status) WHERE status = 'upgrading';
