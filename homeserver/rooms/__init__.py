"""Room lifecycle services: creation, upgrade, the lifecycle state machine, membership."""
