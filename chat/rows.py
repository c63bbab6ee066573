"""Hand-written SQL for the lookups every request and every socket makes.

Compiling a query with the ORM costs far more than running it: the token lookup behind
every request and every `connection_init` took 1.7 ms of CPU through the ORM and 0.13-0.2
ms as SQL, the membership check behind every `chatEvents` about the same (measured
in-process on PostgreSQL, bench/RESULTS.md). These few statements are written out here,
with their table and column names, parameters and results still going through the
models' fields, so they run on SQLite and PostgreSQL alike.
"""

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model


def sql(template: str, **names: Any) -> str:
    """`template` with its names filled in: a model as `{Chat}` (its table) or
    `{Chat.revision}` (a column, by field name), a `Columns` as all of its columns. Values
    never go in here: they are the statement's parameters."""
    return template.format(
        **{
            key: _Names(value) if isinstance(value, type) and issubclass(value, Model) else value
            for key, value in names.items()
        }
    )


class _Names:
    def __init__(self, model: type[Model]) -> None:
        self._model = model

    def __str__(self) -> str:
        return connection.ops.quote_name(self._model._meta.db_table)

    def __getattr__(self, name: str) -> str:
        return connection.ops.quote_name(self._model._meta.get_field(name).column)


def param(model: type[Model], name: str, value: Any) -> Any:
    """`value` as the database takes it for the field `name` (UUIDs, datetimes)."""
    return model._meta.get_field(name).get_db_prep_value(value, connection)


class Columns:
    """All of a model's columns under a table alias, and the instance a row makes."""

    def __init__(self, model: type[Model], alias: str) -> None:
        self.model, self.alias = model, alias
        self.fields: tuple[Field, ...] = tuple(model._meta.concrete_fields)
        self.names = [field.attname for field in self.fields]
        quote = connection.ops.quote_name
        self.sql = ", ".join(f"{alias}.{quote(field.column)}" for field in self.fields)
        self._converters: list[tuple[int, list, Any]] | None = None

    def build(self, row: Sequence[Any], start: int = 0) -> Model:
        """The instance from `row[start:]`, its values converted as the ORM would."""
        values = list(row[start : start + len(self.fields)])
        for index, converters, expression in self._converters_for():
            for convert in converters:
                values[index] = convert(values[index], expression, connection)
        return self.model.from_db(connection.alias, self.names, values)

    def _converters_for(self) -> list[tuple[int, list, Any]]:
        if self._converters is None:
            found = []
            for index, field in enumerate(self.fields):
                expression = field.get_col(self.alias)
                converters = connection.ops.get_db_converters(expression)
                converters += field.get_db_converters(connection)
                if converters:
                    found.append((index, converters, expression))
            self._converters = found
        return self._converters

    def __len__(self) -> int:
        return len(self.fields)

    def __str__(self) -> str:
        return self.sql


def fetch_one(sql: str, params: Sequence[Any]) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def execute(sql: str, params: Sequence[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
