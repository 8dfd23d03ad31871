"""The ``homeserver`` command (also ``python -m homeserver``).

Every failure an operator can fix ends in one line on stderr and exit status 2 (bad config,
unusable key, refusing to overwrite); a failure to start serving (a port in use) exits 1.
Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from homeserver import __version__
from homeserver.config import ConfigError, HomeserverConfig
from homeserver.config.keys import DEFAULT_SECRETS_KEY_FILE, default_signing_key_file
from homeserver.config.listeners import DEFAULT_PORT
from homeserver.config.template import config_relative, render_config
from homeserver.crypto.key_storage import (
    SECRETS_KEY_ENV,
    KeyStorageError,
    load_or_create_signing_key,
)
from homeserver.crypto.passwords import hash_password
from homeserver.crypto.signing import key_id
from homeserver.private_files import ensure_private_dir
from homeserver.types import server_name_error

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A one-line failure to print as ``error: <message>`` with exit status 2."""


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(message, file=sys.stderr)
    return code


# -- generate-config ---------------------------------------------------------------------------


def generate_config(
    *,
    server_name: str,
    config_path: Path,
    data_dir: Path | None,
    http_port: int,
) -> str:
    """Write a new config, secrets key and signing key; return a summary for the operator."""
    reason = server_name_error(server_name)
    if reason:
        raise CommandError(f"invalid --server-name {server_name!r}: {reason}")
    if config_path.exists():
        raise CommandError(f"{config_path} already exists; refusing to overwrite it")
    config_dir = config_path.resolve().parent
    data_dir = (data_dir or config_dir).resolve()
    ensure_private_dir(data_dir, warn_if_open=True)
    config_dir.mkdir(parents=True, exist_ok=True)

    signing_key_path = data_dir / default_signing_key_file(server_name)
    secrets_key_path = data_dir / DEFAULT_SECRETS_KEY_FILE
    # The keys first: if this fails there is no config yet, so running the command again works.
    # An existing key (from Synapse, or an earlier attempt) is kept, never replaced.
    signing_key, created = load_or_create_signing_key(signing_key_path, secrets_key_path)

    text = render_config(
        server_name=server_name,
        http_port=http_port,
        database_path=config_relative(data_dir / "homeserver.db", config_dir),
        signing_key_path=config_relative(signing_key_path, config_dir),
        secrets_key_path=config_relative(secrets_key_path, config_dir),
        registration_shared_secret=secrets.token_urlsafe(32),
    )
    # 0600 and O_EXCL: the file holds the registration secret, and a config written meanwhile by
    # someone else must not be clobbered.
    try:
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{config_path} already exists; refusing to overwrite it") from None
    except OSError as e:
        raise CommandError(f"cannot write {config_path}: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    # Check what was written parses, so a generated config never fails at the first start.
    HomeserverConfig.load(config_path)

    key_note = "created" if created else "kept the existing"
    kek_note = (
        f"the secrets key from {SECRETS_KEY_ENV}"
        if os.environ.get(SECRETS_KEY_ENV)
        else f"the secrets key in {secrets_key_path}"
    )
    return (
        f"wrote {config_path}; {key_note} signing key {key_id(signing_key)} in "
        f"{signing_key_path}, encrypted with {kek_note}\n"
        f"start the server with: homeserver run --config-path {config_path}"
    )


def _cmd_generate_config(args: argparse.Namespace) -> int:
    try:
        summary = generate_config(
            server_name=args.server_name,
            config_path=Path(args.config_path),
            data_dir=Path(args.data_dir) if args.data_dir else None,
            http_port=args.http_port,
        )
    except (CommandError, KeyStorageError) as e:
        return _fail(f"error: {e}")
    except ConfigError as e:
        return _fail(f"config error: {e}")
    print(summary)
    return EXIT_OK


# -- run ---------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    # Imported here: aiohttp is only needed to serve, not to generate a config or hash.
    from homeserver.app import StartupError, run

    try:
        config = HomeserverConfig.load_files(args.config_path)
        run(config)
    except ConfigError as e:
        return _fail(f"config error: {e}")
    except KeyStorageError as e:
        return _fail(f"error: {e}")
    except StartupError as e:
        return _fail(f"error: {e}", EXIT_RUNTIME)
    return EXIT_OK


# -- hash-password -----------------------------------------------------------------------------


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Confirm password: "):
            raise CommandError("the passwords do not match")
    else:
        # One line from a pipe or file; only the line break is not part of the password.
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError("the password is empty")
    return password


def _cmd_hash_password(args: argparse.Namespace) -> int:
    try:
        password = _read_password()
    except CommandError as e:
        return _fail(f"error: {e}")
    except (EOFError, KeyboardInterrupt):
        return _fail("error: no password given")
    print(hash_password(password))
    return EXIT_OK


# -- register-user -----------------------------------------------------------------------------


def _read_password_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None
    # The first line is the password; only its line break is not part of it.
    password = text.splitlines()[0] if text else ""
    if not password:
        raise CommandError(f"{path} holds no password")
    return password


async def _register_user(config: HomeserverConfig, user: str, password: str, admin: bool) -> str:
    # Imported here: the database drivers are not needed by the other commands.
    from homeserver.accounts.sessions import create_account, hash_password_async
    from homeserver.accounts.usernames import check_localpart, password_param
    from homeserver.app import database_settings
    from homeserver.clock import time_ms
    from homeserver.errors import MatrixError
    from homeserver.storage import Store, open_database

    localpart = user
    if user.startswith("@"):
        localpart, _, domain = user[1:].partition(":")
        if domain != config.server_name:
            raise CommandError(f"{user} is not a user of this server ({config.server_name})")
    try:
        user_id = check_localpart(localpart, config.server_name)
        password_param(password)
    except MatrixError as e:
        raise CommandError(f"invalid user {user!r}: {e.message}") from None
    password_hash = await hash_password_async(password)
    try:
        db = await open_database(database_settings(config.database))
    except Exception as e:  # any driver error: one line for the operator, no traceback
        raise CommandError(f"cannot open the {config.database.name} database: {e}") from None
    try:
        created = await create_account(
            Store(db), user_id, password_hash, now=time_ms(), admin=admin
        )
    finally:
        await db.close()
    if created is None:
        raise CommandError(f"user {user_id} already exists")
    return user_id


def _cmd_register_user(args: argparse.Namespace) -> int:
    import asyncio

    try:
        config = HomeserverConfig.load(args.config_path)
        password = (
            _read_password_file(args.password_file) if args.password_file else _read_password()
        )
        user_id = asyncio.run(_register_user(config, args.user, password, args.admin))
    except ConfigError as e:
        return _fail(f"config error: {e}")
    except CommandError as e:
        return _fail(f"error: {e}")
    except (EOFError, KeyboardInterrupt):
        return _fail("error: no password given")
    print(user_id)
    return EXIT_OK


# -- the parser --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeserver", description="A Matrix homeserver.")
    parser.add_argument("--version", action="version", version=f"homeserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate-config",
        help="write a new config file, signing key and secrets key",
        description="Write a new commented config file with SQLite in the data directory, an "
        "encrypted signing key and the secrets key that encrypts it. Never overwrites.",
    )
    generate.add_argument("-H", "--server-name", required=True, help="e.g. example.com")
    generate.add_argument("-c", "--config-path", required=True, help="the config file to write")
    generate.add_argument(
        "--data-dir", help="where the database and keys go (default: the config file's directory)"
    )
    generate.add_argument(
        "--http-port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port of the listener on 127.0.0.1 (default: {DEFAULT_PORT})",
    )
    generate.set_defaults(handler=_cmd_generate_config)

    run = commands.add_parser("run", help="start the server")
    run.add_argument(
        "-c",
        "--config-path",
        required=True,
        action="append",
        help="a config file; give it again for more, each overriding keys of the ones before "
        "(mappings are merged, other values replaced)",
    )
    run.set_defaults(handler=_cmd_run)

    hash_cmd = commands.add_parser(
        "hash-password",
        help="print the argon2 hash of a password read from stdin",
        description="Read a password from stdin (prompting twice on a terminal) and print its "
        "argon2id hash.",
    )
    hash_cmd.set_defaults(handler=_cmd_hash_password)

    register_cmd = commands.add_parser(
        "register-user",
        help="create a user in the database",
        description="Create a user with a password read from --password-file or stdin "
        "(prompting twice on a terminal) and print its user ID.",
    )
    register_cmd.add_argument("-c", "--config-path", required=True, help="the config file")
    register_cmd.add_argument("-u", "--user", required=True, help="localpart or full user ID")
    register_cmd.add_argument("--password-file", help="read the password from this file")
    register_cmd.add_argument("-a", "--admin", action="store_true", help="make a server admin")
    register_cmd.set_defaults(handler=_cmd_register_user)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
