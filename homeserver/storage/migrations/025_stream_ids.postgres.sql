-- Stream positions without a global lock (homeserver/storage/stream_ids.py explains the design
-- and why readers never skip a row). One sequence per stream, started at the stream's current
-- position; the counters in stream_positions that they replace are dropped (push_evaluated,
-- a reader's position, stays).
CREATE SEQUENCE stream_ids_events MINVALUE 0 START WITH 1;
SELECT setval('stream_ids_events', (SELECT COALESCE(MAX(stream_ordering), 0) FROM events), true);
CREATE SEQUENCE stream_ids_account_data MINVALUE 0 START WITH 1;
SELECT setval('stream_ids_account_data',
    (SELECT position FROM stream_positions WHERE stream_name = 'account_data'), true);
CREATE SEQUENCE stream_ids_receipts MINVALUE 0 START WITH 1;
SELECT setval('stream_ids_receipts',
    (SELECT position FROM stream_positions WHERE stream_name = 'receipts'), true);
CREATE SEQUENCE stream_ids_presence MINVALUE 0 START WITH 1;
SELECT setval('stream_ids_presence',
    (SELECT position FROM stream_positions WHERE stream_name = 'presence'), true);
CREATE SEQUENCE stream_ids_to_device MINVALUE 0 START WITH 1;
SELECT setval('stream_ids_to_device',
    (SELECT position FROM stream_positions WHERE stream_name = 'to_device'), true);
CREATE SEQUENCE stream_ids_device_lists MINVALUE 0 START WITH 1;
SELECT setval('stream_ids_device_lists',
    (SELECT position FROM stream_positions WHERE stream_name = 'device_lists'), true);
DELETE FROM stream_positions
WHERE stream_name IN ('account_data', 'receipts', 'presence', 'to_device', 'device_lists');

-- A write transaction that took positions of a stream and has not finished: registered (and
-- committed at once, on a side connection) before it takes them, deleted by its own commit.
-- floor: the sequence's value when it registered (everything it takes is above);
-- position: the first position it took (NULL until then); xid: its transaction
-- (txid_current()), a row counting only while txid_status(xid) is 'in progress';
-- instance: host:pid of the process; started: ms since the epoch.
CREATE TABLE stream_positions_in_flight (
    id BIGSERIAL PRIMARY KEY,
    stream TEXT NOT NULL,
    floor BIGINT NOT NULL,
    position BIGINT,
    xid BIGINT NOT NULL,
    instance TEXT NOT NULL,
    started BIGINT NOT NULL
);
CREATE INDEX stream_positions_in_flight_stream ON stream_positions_in_flight (stream);

-- A writer's registration and its first positions in one round trip: the registration is
-- committed (COMMIT inside the procedure, so CALL it outside any transaction block) before
-- nextval runs, which is what makes readers safe (stream_ids.py). One line: statements of this
-- file are split at a ';' that ends a line.
CREATE PROCEDURE stream_ids_register_and_take(stream_name TEXT, seq REGCLASS, writer_xid BIGINT, writer TEXT, now_ms BIGINT, n INT, INOUT row_id BIGINT, INOUT taken BIGINT[]) LANGUAGE plpgsql AS $$ BEGIN INSERT INTO stream_positions_in_flight (stream, floor, xid, instance, started) VALUES (stream_name, COALESCE(pg_sequence_last_value(seq), 0), writer_xid, writer, now_ms) RETURNING id INTO row_id; COMMIT; SELECT array_agg(p ORDER BY p) INTO taken FROM (SELECT nextval(seq) AS p FROM generate_series(1, n)) AS fresh; UPDATE stream_positions_in_flight SET position = taken[1] WHERE id = row_id; END $$;
