"""Alembic environment of driftline's tables.

Run by :func:`driftline.sinks.database.upgrade_database`, which passes an open connection in
``config.attributes["connection"]``; no ``alembic.ini`` is needed. A developer writing a new
revision can use the same configuration::

    from alembic import command
    from driftline.sinks.database import _alembic_config, create_database_engine
    with create_database_engine(URL).begin() as connection:
        command.revision(_alembic_config(connection), "what changes", autogenerate=True)

then spell the generated operations out in the new file (they must not read the models), and use
``op.batch_alter_table`` for changes of existing tables, which SQLite can only do by copying.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from driftline.sinks.database import VERSION_TABLE
from driftline.sinks.tables import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # Autogenerate: emit batch operations on SQLite, where ALTER TABLE can do little.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "driftline's migrations run through a connection: driftline.sinks.database.upgrade_database "
        "(`driftline db upgrade`) or _alembic_config(connection), as above"
    )
_run(connection)
