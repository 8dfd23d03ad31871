-- State groups as "binary lifting" deltas (see homeserver/storage/state.py).
--
-- prev_state_group is now the group a state group was built on (its parent on the prev-path);
-- base_group is the group its entries are a delta against: the ancestor at position
-- position - lowbit(position) on that path. position counts the groups between the group and
-- its root (a group built on nothing has position 0), and chain_length counts the base links
-- down to a group without a base. Reading a group applies the deltas along base_group links.
--
-- Rows written before this migration keep their old meaning: prev_state_group was already the
-- delta base (NULL for a snapshot), so it is copied to base_group, and position 0 makes each old
-- group the root of the positions counted by groups built on it later.
ALTER TABLE state_groups ADD COLUMN base_group BIGINT REFERENCES state_groups (id);
ALTER TABLE state_groups ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
UPDATE state_groups SET base_group = prev_state_group;
