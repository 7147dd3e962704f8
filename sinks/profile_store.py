"""The SQL profile store: reference profiles (JSON text) by model and version, where the worker reads them."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from .errors import SinkError
from .sql_statements import SqlStore, insert
from .tables import ReferenceProfileRow

__all__ = ["SqlProfileStore"]


class SqlProfileStore(SqlStore):
    """Saves and loads reference profiles in the ``reference_profiles`` table.

    Constructed with an engine and an optional clock (see :class:`~driftline.sinks.sql_statements.SqlStore`).

    Examples
    --------
    >>> import sqlalchemy
    >>> from driftline.sinks.database import upgrade_engine
    >>> engine = sqlalchemy.create_engine("sqlite://")
    >>> upgrade_engine(engine)
    >>> store = SqlProfileStore(engine)
    >>> store.save("churn", "v1", '{"features": {}}')
    >>> store.load("churn", "v1")
    '{"features": {}}'
    """

    def save(self, model: str, model_version: str, profile_json: str) -> None:
        """Store (or replace) the reference profile of ``model`` at ``model_version``.

        Raises
        ------
        ValueError
            ``profile_json`` is not valid JSON.
        SinkError
            The database refused the write.
        """
        try:
            json.loads(profile_json)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"profile_json is not valid JSON: {exc}") from exc
        table: sa.Table = ReferenceProfileRow.__table__  # type: ignore[assignment]
        statement = insert(self.engine.dialect.name, table)
        statement = statement.on_conflict_do_update(
            index_elements=["model", "model_version"],
            set_={"profile": statement.excluded.profile, "created_at": statement.excluded.created_at},
        )
        row = {"model": model, "model_version": model_version, "created_at": self.clock(), "profile": profile_json}
        try:
            with self.engine.begin() as connection:
                connection.execute(statement, row)
        except SQLAlchemyError as exc:
            raise SinkError(f"could not save the reference profile of {model} {model_version}: {exc}") from exc

    def load(self, model: str, model_version: str) -> str | None:
        """The saved profile JSON of ``model`` at ``model_version``, or None if there is none."""
        table: sa.Table = ReferenceProfileRow.__table__  # type: ignore[assignment]
        query = sa.select(table.c.profile).where(table.c.model == model, table.c.model_version == model_version)
        try:
            with self.engine.connect() as connection:
                profile: str | None = connection.execute(query).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise SinkError(f"could not load the reference profile of {model} {model_version}: {exc}") from exc
        return profile

    def load_all(self, model: str) -> list[str]:
        """The saved profile JSON of every version of ``model``, oldest first (empty if there is none)."""
        table: sa.Table = ReferenceProfileRow.__table__  # type: ignore[assignment]
        query = sa.select(table.c.profile).where(table.c.model == model).order_by(table.c.created_at, table.c.model_version)
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(query).scalars())
        except SQLAlchemyError as exc:
            raise SinkError(f"could not load the reference profiles of {model}: {exc}") from exc
