"""``driftline db upgrade``: create or migrate driftline's PostgreSQL tables."""

from __future__ import annotations

import argparse
from typing import Any

from .arguments import add_database_url, database_url

__all__ = ["register", "run_upgrade"]


def register(commands: Any) -> None:
    parser = commands.add_parser("db", help="manage driftline's PostgreSQL schema (Alembic)")
    database_commands = parser.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = database_commands.add_parser("upgrade", help="create or migrate the tables to the latest revision")
    add_database_url(upgrade)
    upgrade.add_argument("--revision", default="head", help="target revision (default head)")
    upgrade.set_defaults(handler=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    from driftline.sinks.database import current_revision, display_url, upgrade_database

    url = database_url(args)
    upgrade_database(url, args.revision)
    print(f"database {display_url(url)} is at revision {current_revision(url)}")
    return 0
