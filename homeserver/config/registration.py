"""``enable_registration``, ``enable_registration_without_verification``,
``registration_requires_token``, the shared secret for ``/_synapse/admin/v1/register``
(``registration_shared_secret`` or its ``_path`` twin) and ``password_hashing`` (the argon2id
cost of new password hashes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from homeserver.config._reader import Reader

KEYS = frozenset(
    {
        "enable_registration",
        "enable_registration_without_verification",
        "registration_shared_secret",
        "registration_shared_secret_path",
        "registration_requires_token",
        "password_hashing",
    }
)


@dataclass(frozen=True, slots=True)
class PasswordHashingConfig:
    """argon2id parameters of new password hashes (argon2-cffi's defaults, RFC 9106's
    low-memory profile). Existing hashes keep theirs and verify as before; one made with other
    parameters is re-hashed at its next login. Lower them only where accounts are throw-away
    (benchmarks register thousands of users)."""

    time_cost: int = 3
    #: KiB.
    memory_cost: int = 65536
    parallelism: int = 4


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    enable_registration: bool
    enable_registration_without_verification: bool
    #: None disables shared-secret registration. Kept out of ``repr`` so it is never logged.
    registration_shared_secret: str | None = field(repr=False)
    #: registration asks for a registration token (the ``m.login.registration_token`` stage).
    registration_requires_token: bool = False
    password_hashing: PasswordHashingConfig = field(default_factory=PasswordHashingConfig)

    @property
    def open_registration(self) -> bool:
        """Whether anyone may register through the client API: as in Synapse, either without
        verification (both flags) or with a registration token (we offer no captcha or e-mail
        verification)."""
        return self.enable_registration and (
            self.enable_registration_without_verification or self.registration_requires_token
        )


def parse_registration(reader: Reader) -> RegistrationConfig:
    secret = reader.string("registration_shared_secret", None)
    secret_path = reader.path_value("registration_shared_secret_path")
    if secret is not None and secret_path is not None:
        raise reader.error(
            "registration_shared_secret_path",
            "cannot be used together with registration_shared_secret",
        )
    if secret_path is not None:
        try:
            secret = secret_path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise reader.error(
                "registration_shared_secret_path", f"cannot read {secret_path}: {e.strerror}"
            ) from None
    if secret is not None and not secret:
        raise reader.error("registration_shared_secret", "must not be empty")
    return RegistrationConfig(
        enable_registration=reader.boolean("enable_registration", False),
        enable_registration_without_verification=reader.boolean(
            "enable_registration_without_verification", False
        ),
        registration_shared_secret=secret,
        registration_requires_token=reader.boolean("registration_requires_token", False),
        password_hashing=_parse_password_hashing(reader),
    )


def _parse_password_hashing(reader: Reader) -> PasswordHashingConfig:
    section = reader.sub("password_hashing")
    default = PasswordHashingConfig()
    parallelism = section.integer("parallelism", default.parallelism, minimum=1, maximum=64)
    config = PasswordHashingConfig(
        time_cost=section.integer("time_cost", default.time_cost, minimum=1, maximum=100),
        # argon2 needs at least 8 KiB per lane.
        memory_cost=section.integer(
            "memory_cost", default.memory_cost, minimum=8 * parallelism, maximum=4 * 1024 * 1024
        ),
        parallelism=parallelism,
    )
    section.warn_unknown()
    return config
