-- The state event each state event replaced: the event at its (type, state_key) in the state
-- just before it, taken at persistence (Synapse's unsigned.replaces_state). Clients get it as
-- unsigned.replaces_state, with that event's content and sender as prev_content and
-- prev_sender. NULL for non-state events, outliers, rejected events and a key set for the
-- first time; rows stored before this migration keep NULL (as Synapse, no backfill).
ALTER TABLE events ADD COLUMN replaces_state TEXT;
