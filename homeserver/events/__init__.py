"""The event model per room version, redaction, IDs and validation. Pure, no I/O."""
