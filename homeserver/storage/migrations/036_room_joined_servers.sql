-- The servers with a member joined to each room, and how many: the fan-out of every event
-- reads this instead of every member of the room (O(servers), not O(members), per event),
-- kept with current_state_events in the same transaction (storage/room_servers.py).
-- A server is everything after a user ID's first ":".
CREATE TABLE room_joined_servers (
    room_id TEXT NOT NULL,
    server_name TEXT NOT NULL,
    joined_members BIGINT NOT NULL,
    PRIMARY KEY (room_id, server_name)
);

INSERT INTO room_joined_servers (room_id, server_name, joined_members)
SELECT room_id, substr(state_key, {{str_find}}(state_key, ':') + 1), COUNT(*)
FROM current_state_events
WHERE type = 'm.room.member' AND membership = 'join'
GROUP BY room_id, substr(state_key, {{str_find}}(state_key, ':') + 1);
