-- Out-of-band memberships: a local user's membership in a room this server is not in (an invite
-- received through PUT /_matrix/federation/v2/invite, or the leave that rejected it through a
-- remote send_leave). The event itself is stored as an outlier (no state, no timeline); this row
-- is what /sync reads to show it under rooms.invite / rooms.leave. stream_ordering is the
-- outlier's position in the events stream, so sync tokens order it with everything else.
CREATE TABLE out_of_band_memberships (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    room_version TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX out_of_band_memberships_stream ON out_of_band_memberships (user_id, stream_ordering);
