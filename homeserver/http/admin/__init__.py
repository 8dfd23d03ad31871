"""The admin API under ``/_synapse/admin``, with Synapse's paths and JSON keys."""
