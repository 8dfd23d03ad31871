-- The media repository. File contents live on disk under media_store_path, named by their
-- SHA-256 (content-addressed: one file however many rows name it); these tables say which
-- media IDs exist, whose they are and which file holds them.

-- Media uploaded here. A row made by POST /media/v1/create has no content yet (sha256 NULL)
-- until its upload, and is forgotten after unused_expires_ts. authenticated: uploaded while
-- enable_authenticated_media was on (then the legacy unauthenticated paths do not serve it).
CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    media_type TEXT,
    media_length BIGINT,
    upload_name TEXT,
    sha256 TEXT,
    unused_expires_ts BIGINT,
    authenticated BOOLEAN NOT NULL DEFAULT FALSE,
    quarantined_by TEXT,
    safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX local_media_user ON local_media (user_id, created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256);

-- Other servers' media fetched for our users, kept until an admin purges the cache.
CREATE TABLE remote_media_cache (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    upload_name TEXT,
    sha256 TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    last_access_ts BIGINT NOT NULL,
    authenticated BOOLEAN NOT NULL DEFAULT FALSE,
    quarantined_by TEXT,
    PRIMARY KEY (media_origin, media_id)
);
CREATE INDEX remote_media_cache_access ON remote_media_cache (last_access_ts);
CREATE INDEX remote_media_cache_sha256 ON remote_media_cache (sha256);

-- Thumbnails of local and remote media (media_origin is our server name for local media).
CREATE TABLE media_thumbnails (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    media_type TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (media_origin, media_id, width, height, method, media_type)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);

-- Which events name which media (mxc:// URIs in content.url, content.info.thumbnail_url,
-- content.file.url, content.info.thumbnail_file.url), written with the event. A room purge
-- deletes its rows (room_id column), after which media no row names any more are deleted.
CREATE TABLE media_references (
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    PRIMARY KEY (event_id, media_origin, media_id)
);
CREATE INDEX media_references_media ON media_references (media_origin, media_id);
CREATE INDEX media_references_room ON media_references (room_id);
