-- Every change to a remote user's device-list position (an update applied, or the list marked
-- stale) bumps changes. A resync remembers it before asking the user's server and stores the
-- answer only if it did not move meanwhile: another process may have applied a newer update
-- (or marked the list stale again) while the answer was on its way.
ALTER TABLE remote_device_list_positions ADD COLUMN changes BIGINT NOT NULL DEFAULT 0;
