"""``driftline db upgrade``: create or migrate driftline's PostgreSQL tables."""

from __future__ import annotations

import argparse
from typing import Any

from .arguments import add_database_url, database_url

__all__ = ["register", "run_grant_readonly", "run_upgrade"]


def register(commands: Any) -> None:
    parser = commands.add_parser("db", help="manage driftline's PostgreSQL schema (Alembic)")
    database_commands = parser.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = database_commands.add_parser("upgrade", help="create or migrate the tables to the latest revision")
    add_database_url(upgrade)
    upgrade.add_argument("--revision", default="head", help="target revision (default head)")
    upgrade.set_defaults(handler=run_upgrade)
    grant = database_commands.add_parser(
        "grant-readonly", help="create (if missing) a role that reads the analyst views and nothing else",
        description="Grant ROLE read access to the analyst views (feature_drift, model_volume, model_performance, "
        "alert_log) of driftline's schema: no table, no write, no CREATE. Idempotent; run it again after `db upgrade`.",
    )
    add_database_url(grant)
    grant.add_argument("role", help="the role (created NOLOGIN if missing: a group role analysts' logins join)")
    grant.add_argument("--password-env", metavar="VAR",
                       help="make it a login role with the password in environment variable VAR (never on the command line)")
    grant.set_defaults(handler=run_grant_readonly)


def run_upgrade(args: argparse.Namespace) -> int:
    from driftline.sinks.database import current_revision, display_url, upgrade_database

    url = database_url(args)
    upgrade_database(url, args.revision)
    print(f"database {display_url(url)} is at revision {current_revision(url)}")
    return 0


def run_grant_readonly(args: argparse.Namespace) -> int:
    import os

    from driftline.sinks.database import display_url, grant_readonly

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise SystemExit(f"driftline db grant-readonly: environment variable {args.password_env} is not set or empty")
    url = database_url(args)
    schema, views = grant_readonly(url, args.role, password=password)
    login = "a login role" if password else "a role"
    print(f"{args.role} is {login} that reads {', '.join(views)} in schema {schema} of {display_url(url)}, and nothing else")
    return 0
