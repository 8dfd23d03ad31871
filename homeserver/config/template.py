"""The commented homeserver.yaml that ``homeserver generate-config`` writes.

config.sample.yaml at the repository root is this template rendered with example values
(:func:`render_sample`); a test keeps the two identical, so the sample documents exactly what
the generator writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from string import Template

_TEMPLATE = Template(
    """\
# homeserver.yaml: the configuration of this Matrix homeserver.
#
# Key names follow Synapse's wherever the concept exists, so most of a Synapse homeserver.yaml
# carries over. Relative paths are relative to the directory of this file. Durations are a
# number or a string with a unit: "30s", "5m", "1h", "1d". Commented-out lines show optional
# keys with their defaults. Unknown keys are ignored with a warning at start-up.

## Server ##

# The domain in every user ID (@alice:<server_name>) and room alias. It cannot change once users
# and rooms exist.
server_name: $server_name

# The URL clients use to reach this server. Default: https://<server_name>/. When it is set,
# /.well-known/matrix/client advertises it.
#public_baseurl: https://matrix.example.com/

# Serve /.well-known/matrix/server (federation delegation). Default: false.
#serve_server_wellknown: false

# The room version of new rooms, "1" to "12". Default: "12".
#default_room_version: "12"

# How long the address and user agent each session was used from are kept (shown by the admin
# API's whois and devices list and by the client's /devices), as Synapse's. A bare number is
# milliseconds. Default: 28d.
#user_ips_max_age: 28d

## Listeners ##

# Each listener serves HTTP on one port, on each of its bind_addresses (default: 127.0.0.1
# only; add "::1" for IPv6, or "0.0.0.0" to serve all interfaces). Its resources are:
#   client      the client-server API (/_matrix/client), with the admin API as in Synapse
#   federation  the server-server API (/_matrix/federation), with the key server
#   keys        the key server (/_matrix/key) alone
#   metrics     Prometheus metrics (/_synapse/metrics)
#   admin       the admin API (/_synapse/admin) alone
# /health answers "OK" on every listener. type is "http" ("metrics" is Synapse's name for a
# listener that serves only metrics). tls: true serves HTTPS with the certificate below.
# x_forwarded: true means a reverse proxy is in front of this listener: the client's address
# (per-address rate limits, the access log) is then the last X-Forwarded-For entry, the one the
# proxy appended; earlier entries are ignored (a client can write them). Default: false.
# Each listener also limits slow and numerous clients (our keys; Synapse has none):
#   request_header_timeout  how long a client may take to send a request's head (request line
#                           and headers), counted from the connection opening or the head's
#                           first byte; also how long a kept-alive connection may sit idle
#                           between requests. Then the connection is closed. Default: 30s.
#   request_body_timeout    how long a client may take to send a request's body once its head
#                           has arrived; then it gets 408 and the connection is closed.
#                           Default: 60s.
#   max_connections         open connections on this listener (over all its addresses); one
#                           more gets 503 and is closed at once. Default: 800.
# A bare number for the timeouts is seconds.
listeners:
  - port: $http_port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    #request_header_timeout: 30s
    #request_body_timeout: 60s
    #max_connections: 800
    resources:
      - names: [client, federation]

# Serve Prometheus metrics at /_synapse/metrics on listeners naming the "metrics" resource, and
# start listeners of type: metrics (as in Synapse: without this key neither happens). Keep them
# off public listeners, e.g. a listener {port: 9000, type: metrics} on 127.0.0.1.
# Default: false.
#enable_metrics: false

# PEM certificate chain and private key for listeners with tls: true.
#tls_certificate_path: /etc/homeserver/tls.crt
#tls_private_key_path: /etc/homeserver/tls.key

## Database ##

# SQLite, in one file: fine for a small community. Its directory is created 0700 when missing,
# and the database (with its -wal and -shm files) is kept 0600: at start-up a database or key
# file that other users may read is made 0600, with a warning.
database:
  name: sqlite3
  args:
    database: $database_path

# PostgreSQL, for larger servers and for several processes sharing one database. args takes
# libpq keywords (or one dsn) and the connection pool size cp_min..cp_max. Create the database
# with --encoding=UTF8 --locale=C --template=template0.
#database:
#  name: psycopg2                # or postgresql
#  allow_unsafe_locale: false    # true accepts a database whose collation is not C
#  args:
#    user: homeserver
#    password: a-secret-password
#    dbname: homeserver          # or database
#    host: localhost             # or a socket directory such as /var/run/postgresql
#    port: 5432
#    #dsn: postgresql://homeserver:a-secret-password@localhost:5432/homeserver
#    cp_min: 5
#    cp_max: 10

## Several processes ##

# Processes sharing one PostgreSQL database each need a distinct instance_name (Synapse's key),
# best set in each process's own config file. Default: the host name and process ID, which
# change at every restart. Work that must happen once (each federation destination's delivery,
# the push sender, resuming room deletions, recovering stranded upgrades) is held by one live
# process under a lease it renews; a process that stops renewing for lease_timeout loses it,
# and another takes it over. Durations: a bare number is in seconds.
#instance_name: homeserver1
#worker_leases:
#  lease_timeout: 20s     # renewed every third of it
#  poll_interval: 1s      # how often a process looks for federation work others queued

## Keys ##

# The server's ed25519 signing key, stored encrypted with the secrets key. A Synapse key file
# ("ed25519 a_XXXX <seed>") is accepted as it is and keeps its key ID. Created at first start
# when missing.
signing_key_path: $signing_key_path

# 32 random bytes (base64) that encrypt the signing key. Keep the file readable by this server
# only (mode 0600) and back it up apart from the database. When the environment variable
# HOMESERVER_SECRETS_KEY is set, it is used instead of this file.
secrets_key_path: $secrets_key_path

# Keys this server signed with before, published as old_verify_keys so other servers can still
# check old events.
#old_signing_keys:
#  "ed25519:a_old1": {key: "<base64 public key>", expired_ts: 1700000000000}

# How long other servers may cache our keys (valid_until_ts). A bare number is milliseconds, as
# in Synapse. Default: 1d.
#key_refresh_interval: 1d

## Registration ##

# Let anyone create an account through the client API. Both keys must be true, as in Synapse,
# because this server does no e-mail or captcha verification. Default: false.
#enable_registration: false
#enable_registration_without_verification: false

# Ask for a registration token (made through the admin API, /_synapse/admin/v1/
# registration_tokens) in every registration through the client API, as Synapse's
# m.login.registration_token stage. With it, enable_registration alone opens registration to
# holders of a token. Default: false.
#registration_requires_token: false

# The shared secret of /_synapse/admin/v1/register (register_new_matrix_user and
# "homeserver register-user" use it); registration through it works even when
# enable_registration is false. registration_shared_secret_path reads it from a file instead.
$registration_shared_secret_line
#registration_shared_secret_path: /etc/homeserver/registration_secret

# The argon2id cost of new password hashes (memory_cost in KiB). Hashes made with other
# parameters still verify, and are re-hashed at the user's next login. Lower only for
# throw-away accounts (benchmarks). Defaults: as below (RFC 9106's low-memory profile).
#password_hashing:
#  time_cost: 3
#  memory_cost: 65536
#  parallelism: 4

## Rooms ##

# Encrypt new rooms by default: off, invite (rooms created with the private_chat or
# trusted_private_chat preset) or all. Default: off.
#encryption_enabled_by_default_for_room_type: "off"

# Power levels merged over a preset's defaults when a room is created, per preset
# (private_chat, trusted_private_chat, public_chat). createRoom's power_level_content_override
# is applied after it.
#default_power_level_content_override:
#  private_chat:
#    events:
#      m.room.name: 50

# Let clients read the public room directory (/publicRooms) without an access token.
# Default: false (as Synapse).
#allow_public_rooms_without_auth: false

# Let other servers read the public room directory (/_matrix/federation/v1/publicRooms); when
# false they get 403. Default: false (as Synapse).
#allow_public_rooms_over_federation: false

## VoIP ##

# TURN servers handed to clients for calls (GET /voip/turnServer). With turn_shared_secret (the
# TURN server's static-auth-secret, coturn's "use-auth-secret") every user gets a username
# "<expiry>:<user ID>" and the HMAC-SHA1 password of it, valid for turn_user_lifetime (a bare
# number is milliseconds, as in Synapse); or set fixed turn_username and turn_password instead.
# Without turn_uris the endpoint answers {} (no TURN). turn_shared_secret_path reads the secret
# from a file. turn_allow_guests is accepted for Synapse configs (there are no guests here).
#turn_uris: ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp"]
#turn_shared_secret: a-long-random-secret
#turn_shared_secret_path: /etc/homeserver/turn_secret
#turn_username: turnuser
#turn_password: turnpassword
#turn_user_lifetime: 1h
#turn_allow_guests: true

## Room upgrades ##

#room_upgrades:
#  # Join every local member of the old room to the new one. Default: true.
#  auto_join_local_members: true
#  # Invite the old room's remote members to the new one over federation. Default: true.
#  invite_remote_members: true
#  # How often to plan the upgrade again when the old room's state changed meanwhile.
#  max_state_conflict_retries: 5
#  # When an upgrade's process dies, the room is upgradable again after this long.
#  # A bare number is seconds. Default: 5m.
#  lock_timeout: 5m
#  # When another server upgrades a room our users are joined to, join each of them to the
#  # replacement room (accepting their invite, or joining where the join rules allow). A user
#  # opts out with global account data of type m.room_upgrades holding
#  # {"follow_remote_upgrades": false}. Default: true.
#  follow_remote_upgrades: true

## Rate limits ##

# Token buckets: per_second actions refill, up to burst_count at once. Over the limit, a client
# gets 429 M_LIMIT_EXCEEDED with retry_after_ms. The defaults are Synapse's.
#rc_room_creation:               # createRoom and room upgrades, per user
#  per_second: 0.016
#  burst_count: 10
#rc_message:                     # events sent, per user
#  per_second: 0.2
#  burst_count: 10
#rc_registration:                # registrations, per IP address; shared-secret registration
#  per_second: 0.17              # nonces (GET /_synapse/admin/v1/register) have a bucket of
#  burst_count: 3                # their own with the same settings
#rc_login:                       # a flat {per_second, burst_count} here sets all three
#  address: {per_second: 0.003, burst_count: 5}
#  account: {per_second: 0.003, burst_count: 5}
#  failed_attempts: {per_second: 0.17, burst_count: 3}
#rc_joins:                       # a flat {per_second, burst_count} here sets both
#  local: {per_second: 0.1, burst_count: 10}
#  remote: {per_second: 0.01, burst_count: 10}
#rc_invites:                     # invites (a flat {per_second, burst_count} sets all three)
#  per_room: {per_second: 0.3, burst_count: 10}      # per room; createRoom's invites must
#                                                    # all fit in one burst
#  per_user: {per_second: 0.003, burst_count: 5}     # per invited user (the only limit on
#                                                    # invites from other servers)
#  per_issuer: {per_second: 0.3, burst_count: 10}    # per inviting user
#rc_media_create:                # media uploads and POST /_matrix/media/v1/create, per user
#  per_second: 10                # (Synapse limits only the latter with this key)
#  burst_count: 50
#rc_to_device:                   # PUT /sendToDevice requests, per sending device (our key:
#  per_second: 20                # Synapse only drops room-key requests past these numbers,
#  burst_count: 100              # its undocumented rc_key_requests)
#rc_presence:                    # presence updates (PUT /presence, /sync's set_presence):
#  per_user: {per_second: 0.1, burst_count: 1}       # past it PUT gets 429 and a /sync's
#                                                    # set_presence is ignored
#rc_typing: {per_second: 2, burst_count: 20}         # typing notifications, per user (our key)
# Users none of the limits above apply to (bridges, bots, load tests). Default: none.
#rc_exempt_users:
#  - "@bridge:example.com"
# Key fetches an unauthenticated caller can make us do, per client address (our key; Synapse
# limits neither): one token per remote server named in a /_matrix/key/v2/query request (a
# request naming more than burst_count servers takes the whole bucket), one per key fetch for
# an X-Matrix request from an origin whose keys we do not hold. Default: 1/s, burst 50.
#rc_remote_key_fetches: {per_second: 1, burst_count: 50}

## Presence ##

# Track and share presence (online / unavailable / offline, status messages) with the users
# and servers sharing a room. Off: GET /presence says offline, nothing is stored, sent or
# accepted. Default: true (as Synapse).
#presence:
#  enabled: true

## Several processes ##

# Several identical processes may serve one server over one PostgreSQL database (SQLite serves
# one process: a second one on the same database is refused at start). They tell each other
# of new data (long-poll wake-ups, cache invalidations, typing, presence) and share the rc_*
# rate limits through Redis (Synapse's keys). Each process reads the shared file and a small
# file of its own: `homeserver run -c homeserver.yaml -c process1.yaml`. A later file
# overrides an earlier one's keys: mappings are merged key by key, anything else (a list such as
# listeners, a string, a number) is replaced whole. Relative paths are relative to the first
# file's directory. While Redis is unreachable each process keeps serving: long polls check the
# database every second, caches are bypassed, rate limits are per process, and it reconnects by
# itself (metric homeserver_redis_connected). Ignored with SQLite.
#redis:
#  enabled: false
#  host: localhost
#  port: 6379
#  password: ""
#  dbid: 0
#  prefix: "homeserver:<server_name>:"   # before every key and channel (one Redis, many servers)

# This process's name among several (logs, metrics, Redis messages). Default: <hostname>-<pid>.
#instance_name: process1

## User directory ##

# Who POST /user_directory/search finds (the invite and new-DM dialogs). By default a user finds
# the users sharing a room with them and those joined to a publicly viewable room (public join
# rule or world_readable history); search_all_users: every user the server knows. Deactivated
# users are never found. Off (enabled: false): every search answers no results.
#user_directory:
#  enabled: true
#  search_all_users: false
#  prefer_local_users: false      # rank local users first
#  exclude_remote_users: false    # find only local users

## Server notices ##

# Notices from the server's admins (POST /_synapse/admin/v1/send_server_notice) reach each
# user in a room of their own with the notices user, where they cannot speak. Leaving it is
# allowed: the next notice opens a new room. Off unless system_mxid_localpart is set (then the
# admin API answers 400). auto_join: join the user at once instead of inviting them.
#server_notices:
#  system_mxid_localpart: notices
#  system_mxid_display_name: "Server Notices"
#  system_mxid_avatar_url: "mxc://example.com/abcdef"
#  room_name: "Server Notices"
#  room_avatar_url: "mxc://example.com/abcdef"
#  room_topic: "Messages from the server's administrators"
#  auto_join: false
## Media ##

# Uploaded files and the cache of other servers' media. Files are named by the SHA-256 of their
# content (one copy per distinct file) under media_store_path, created 0700. Default:
# media_store beside this file.
#media_store_path: media_store

# The largest upload (and the largest remote media fetched): a number of bytes or a size with
# K, M, G (powers of 1024). Default: 50M.
#max_upload_size: 50M

# Images with more pixels than this are not thumbnailed. Default: 32M.
#max_image_pixels: 32M

# The thumbnails served: a request gets the smallest of its method that covers the size asked
# for. With dynamic_thumbnails: true any size asked for is made instead. JPEG images get JPEG
# thumbnails, other images PNG. Default: these five.
#thumbnail_sizes:
#  - {width: 32, height: 32, method: crop}
#  - {width: 96, height: 96, method: crop}
#  - {width: 320, height: 240, method: scale}
#  - {width: 640, height: 480, method: scale}
#  - {width: 800, height: 600, method: scale}
#dynamic_thumbnails: false

# Serve media only to authenticated users (/_matrix/client/v1/media and federation): media
# uploaded or fetched while this is on is refused on the legacy unauthenticated
# /_matrix/media/v3 download and thumbnail paths. Default: true (as Synapse).
#enable_authenticated_media: true

# MXC URIs a user may have reserved with POST /_matrix/media/v1/create and not uploaded to
# yet, and how long a reservation waits for its upload (a bare number is milliseconds).
#max_pending_media_uploads: 5
#unused_expiration_time: 24h

# Other servers' media fetched at once (our key). Default: 8.
#remote_media_download_concurrency: 8

# URL previews are not supported; this must stay false.
#url_preview_enabled: false

## Federation ##

# Check other servers' TLS certificates. Turn off only in tests. Default: true.
#federation_verify_certificates: true

# IP ranges no outbound request (federation API, key fetches, .well-known and every redirect
# hop, HTTP pushers' push gateways) may connect to; checked on the address actually connected
# to. Default: loopback, private, link-local, carrier-grade NAT, documentation, multicast and
# reserved ranges (IPv4 and IPv6). 0.0.0.0 and :: are always added, as in Synapse.
# ip_range_whitelist makes exceptions, for example to federate on a LAN or to reach a push
# gateway on this host.
#ip_range_blacklist: ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
#ip_range_whitelist: ["192.168.1.0/24"]

# Federate only with these servers. Default: with every server.
#federation_domain_whitelist: [matrix.org, example.com]

# Delivery to other servers (Synapse's keys). Events for a server that cannot be reached stay
# queued and are retried with exponential backoff. Durations: a bare number is milliseconds.
#federation:
#  # The wait before the first retry of a server that failed. Default: 10m.
#  destination_min_retry_interval: 10m
#  # Each further failure multiplies the wait by this (with some jitter). Default: 2.
#  destination_retry_multiplier: 2
#  # The longest wait between retries. Default: 1w.
#  destination_max_retry_interval: 1w
#  # One request to another server gives up after this long. Default: 60s.
#  client_timeout: 60s

## Logging ##

# A Python logging.config.dictConfig file in YAML (Synapse's format), re-read on SIGHUP
# (systemctl reload). Default: INFO and above to stderr, one JSON object per line (ts, level,
# logger, message, request, user, room, txn). Formatters may use %(request)s, %(user)s,
# %(room)s and %(txn)s, and homeserver.logging.JsonFormatter. Access tokens, passwords, keys
# and message bodies are removed from every line whatever this file says.
#log_config: $log_config_example

## Modules ##

# Operator modules, by import path, each with its own config; they receive the room.created,
# room.upgraded and room.upgrade.failed events.
#modules:
#  - module: my_package.MyModule
#    config: {}
"""
)


def _yaml_string(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar, so any path or name round-trips.
    return json.dumps(value)


def config_relative(path: Path, config_dir: Path) -> str:
    """``path`` relative to the config file's directory when it lies inside it (so the data
    directory can move as a whole), else absolute."""
    path, config_dir = path.resolve(), config_dir.resolve()
    if path.is_relative_to(config_dir):
        return os.path.relpath(path, config_dir)
    return str(path)


def render_config(
    *,
    server_name: str,
    http_port: int,
    database_path: str,
    signing_key_path: str,
    secrets_key_path: str,
    registration_shared_secret: str | None,
) -> str:
    if registration_shared_secret is None:
        secret_line = "#registration_shared_secret: <a long random string>"
    else:
        secret_line = f"registration_shared_secret: {_yaml_string(registration_shared_secret)}"
    return _TEMPLATE.substitute(
        server_name=_yaml_string(server_name),
        http_port=http_port,
        database_path=_yaml_string(database_path),
        signing_key_path=_yaml_string(signing_key_path),
        secrets_key_path=_yaml_string(secrets_key_path),
        registration_shared_secret_line=secret_line,
        log_config_example=_yaml_string("log_config.yaml"),
    )


def render_sample() -> str:
    """config.sample.yaml: the template with example values and no secret."""
    return render_config(
        server_name="example.com",
        http_port=8008,
        database_path="homeserver.db",
        signing_key_path="example.com.signing.key",
        secrets_key_path="secrets.key",
        registration_shared_secret=None,
    )
