-- The user directory (POST /user_directory/search): one row per user a search may find (every
-- local user, and each remote user while joined to a room we know), with the public name and
-- avatar shown for them and search_text, their words (display name, localpart, server name)
-- casefolded, each preceded by a space, so that a prefix of any word is found with
-- LIKE '% word%' on both engines. Who may see whom is decided at search time from
-- current_state_events (shared rooms) and user_directory_public_rooms.
CREATE TABLE user_directory (
    user_id TEXT PRIMARY KEY,
    display_name TEXT,
    avatar_url TEXT,
    search_text TEXT NOT NULL
);

-- Rooms whose current join rule is public or whose history is world_readable (Synapse's
-- "publicly viewable" rooms): their joined members are visible to every searcher.
CREATE TABLE user_directory_public_rooms (
    room_id TEXT PRIMARY KEY
);

-- One row while the directory must be rebuilt from users, profiles and current state (at the
-- next start: the users and rooms that existed before this migration).
CREATE TABLE user_directory_rebuild (
    needed BOOLEAN PRIMARY KEY
);
INSERT INTO user_directory_rebuild (needed) VALUES (TRUE);
