-- /sync's own streams and the per-user data it carries: filters, account data (incl. tags and
-- m.fully_read), receipts and push rules.

-- Counters of the non-event streams. A position is taken with
-- UPDATE ... SET position = position + 1 RETURNING position inside the writing transaction: the
-- row lock (PostgreSQL) or the single writer (SQLite) makes positions grow in commit order, so a
-- reader that saw position P has seen every row stamped <= P.
CREATE TABLE stream_positions (
    stream_name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO stream_positions (stream_name, position) VALUES ('account_data', 0);
INSERT INTO stream_positions (stream_name, position) VALUES ('receipts', 0);

-- Stored /sync filters; the filter ID a client sees is filter_id as a string.
CREATE TABLE user_filters (
    filter_id {{id_pk}},
    user_id TEXT NOT NULL,
    filter_json TEXT NOT NULL
);
CREATE INDEX user_filters_user ON user_filters (user_id);

-- Account data: room_id '' for global data. stream_id is the account_data stream position of
-- the last write.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);

-- The latest receipt per (room, type, user, thread); thread_id '' for an unthreaded receipt.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);

-- A user's push rules. Rows whose rule_id starts with '.' only override a server-default rule's
-- enabled flag and/or actions (NULL: the default's); other rows are the user's own rules, ordered
-- within their kind by priority (higher first).
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    conditions TEXT,
    pattern TEXT,
    actions TEXT,
    enabled BOOLEAN,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- When a user's push rules last changed, on the account_data stream (sync then sends
-- m.push_rules).
CREATE TABLE push_rules_stream (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- /sync looks up a user's own membership events across rooms by stream position.
CREATE INDEX events_user_membership ON events (state_key, type, stream_ordering);
