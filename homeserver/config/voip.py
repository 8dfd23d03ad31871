"""TURN for VoIP calls (``/voip/turnServer``): ``turn_uris``, ``turn_shared_secret`` (or its
``_path`` twin), ``turn_username``/``turn_password``, ``turn_user_lifetime`` and
``turn_allow_guests``, as in Synapse."""

from __future__ import annotations

from dataclasses import dataclass, field

from homeserver.config._reader import Reader

KEYS = frozenset(
    {
        "turn_uris",
        "turn_shared_secret",
        "turn_shared_secret_path",
        "turn_username",
        "turn_password",
        "turn_user_lifetime",
        "turn_allow_guests",
    }
)


@dataclass(frozen=True, slots=True)
class VoipConfig:
    turn_uris: tuple[str, ...] = ()
    #: The secret shared with the TURN server (coturn's ``static-auth-secret``); None when
    #: fixed credentials (or none) are used. Kept out of ``repr`` so it is never logged.
    turn_shared_secret: str | None = field(default=None, repr=False)
    turn_username: str | None = None
    turn_password: str | None = field(default=None, repr=False)
    #: How long the credentials handed out stay valid, in milliseconds.
    turn_user_lifetime_ms: int = 3_600_000
    #: Synapse's key; this server has no guest accounts, so it changes nothing yet.
    turn_allow_guests: bool = True


def parse_voip(reader: Reader) -> VoipConfig:
    secret = reader.string("turn_shared_secret", None)
    secret_path = reader.path_value("turn_shared_secret_path")
    if secret is not None and secret_path is not None:
        raise reader.error(
            "turn_shared_secret_path", "cannot be used together with turn_shared_secret"
        )
    if secret_path is not None:
        try:
            secret = secret_path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise reader.error(
                "turn_shared_secret_path", f"cannot read {secret_path}: {e.strerror}"
            ) from None
    lifetime = reader.duration_seconds("turn_user_lifetime", 3600, bare_number_unit="ms")
    return VoipConfig(
        turn_uris=tuple(reader.string_list("turn_uris", []) or ()),
        turn_shared_secret=secret or None,
        turn_username=reader.string("turn_username", None),
        turn_password=reader.string("turn_password", None),
        turn_user_lifetime_ms=round(lifetime * 1000),
        turn_allow_guests=reader.boolean("turn_allow_guests", True),
    )
