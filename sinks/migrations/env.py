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

from driftline.sinks.database import VERSION_TABLE, create_database_engine, metadata

config = context.config


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the caller's connection (or, from an alembic.ini, ``sqlalchemy.url``)."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection in config.attributes['connection'] or set sqlalchemy.url")
    engine = create_database_engine(url)
    try:
        with engine.begin() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


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


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
