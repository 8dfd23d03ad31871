-- Work that must happen once among processes sharing the database (issue 17).
--
-- A lease names one piece of work (a federation destination's delivery, a background job) and
-- the process holding it until expires_ts. It is taken by compare-and-set (free, expired, or
-- already its holder's), renewed by its holder while the token matches, and given up by
-- deleting the row. token is fresh at every acquisition: a process that lost a lease and
-- renews late finds another token and learns that it lost it.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token TEXT NOT NULL,
    acquired_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX leases_holder ON leases (holder);

-- Each process's heartbeat: the live processes are those seen within the lease timeout. The
-- federation sender shards destinations over them.
CREATE TABLE instances (
    instance_name TEXT PRIMARY KEY,
    started_ts BIGINT NOT NULL,
    last_seen_ts BIGINT NOT NULL
);

-- The process that took a room's upgrade lock: at its restart, the rooms it left 'upgrading'
-- are active again at once; another process waits for the lock's lease (or the process's
-- heartbeat) to run out instead.
ALTER TABLE rooms ADD COLUMN upgrade_lock_instance TEXT;
