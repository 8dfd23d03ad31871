-- Pagination of GET /rooms/{roomId}/hierarchy (Synapse's room_hierarchy sessions): the walk's
-- queue and the rooms already returned, stored under the opaque next_batch token so that any
-- process serving the next page continues the same walk. A session is bound to the user, the
-- root room and the query's parameters, and lives five minutes.
CREATE TABLE room_hierarchy_sessions (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    params TEXT NOT NULL,
    walk TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX room_hierarchy_sessions_expiry ON room_hierarchy_sessions (expires_ts);
