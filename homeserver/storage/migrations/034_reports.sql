-- Reports of abuse made by users (Synapse's event_reports, room_reports, user_reports): an event
-- (POST /rooms/{roomId}/report/{eventId}), a room (POST /rooms/{roomId}/report) or a user
-- (POST /users/{userId}/report). Read and deleted through the admin API. ids are allocated in
-- the inserting transaction (see storage/reports.py), increasing with received_ts.
CREATE TABLE event_reports (
    id BIGINT PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT,
    -- the request's body as received (canonical JSON): `score` and `reason` are read from it.
    content TEXT NOT NULL
);
CREATE INDEX event_reports_room ON event_reports (room_id);
CREATE INDEX event_reports_received ON event_reports (received_ts);

CREATE TABLE room_reports (
    id BIGINT PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX room_reports_room ON room_reports (room_id);

CREATE TABLE user_reports (
    id BIGINT PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    target_user_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX user_reports_received ON user_reports (received_ts);
