"""Hand-written SQL for the lookups every request and every socket makes, and the writes
every message makes.

Compiling a query with the ORM costs far more than running it: the token lookup behind
every request and every `connection_init` took 1.7 ms of CPU through the ORM and 0.13-0.2
ms as SQL, the membership check behind every `chatEvents` about the same (measured
in-process on PostgreSQL, bench/RESULTS.md). These few statements are written out here,
with their table and column names, parameters and results still going through the
models' fields, so they run on SQLite and PostgreSQL alike.

A message's writes (the message, its change, the chat's counters, the author's read
position) go to PostgreSQL as one statement (`run`): through the ORM they were four
statements and about 15 % of a send's CPU (py-spy, bench/RESULTS.md, issue 14).
"""

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections
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


def params(model: type[Model], name: str, values: Iterable[Any]) -> list[Any]:
    """`param` of each value, the field and the thread's connection looked up once (a
    chat list's newest messages take 100)."""
    prepare = model._meta.get_field(name).get_db_prep_value
    database = connections[DEFAULT_DB_ALIAS]
    return [prepare(value, database) for value in values]


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
        """The instance from `row[start:]`, its values converted as the ORM would.

        The connection is asked for only where a column has converters (none on
        PostgreSQL for the token lookup): on the event loop each request is a context of
        its own, where asking for it builds a `DatabaseWrapper` per request."""
        values = list(row[start : start + len(self.fields)])
        converters = self._converters_for()
        if converters:
            database = connections[DEFAULT_DB_ALIAS]
            for index, convert_all, expression in converters:
                for convert in convert_all:
                    values[index] = convert(values[index], expression, database)
        return self.model.from_db(DEFAULT_DB_ALIAS, self.names, values)

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


class Statement(NamedTuple):
    sql: str
    params: list[Any]


def insert(instance: Model) -> Statement:
    """An INSERT of `instance`, every column as the ORM would save it (defaults and
    `pre_save` applied); a primary key left to the database (an AutoField) is left out.
    Mark the instance saved (`saved`) once the statement has run."""
    meta = instance._meta
    fields = [
        field
        for field in meta.concrete_fields
        if not (field.primary_key and getattr(instance, field.attname) is None)
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    values = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
    ]
    placeholders = ", ".join(["%s"] * len(fields))
    return Statement(
        # Names come from the model, quoted; every value is a parameter.
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})",  # noqa: S608
        values,
    )


def update(model: type[Model], where: dict[str, Any], **values: Any) -> Statement:
    """An UPDATE of `values` on the rows of `model` whose fields equal `where`'s."""
    quote = connection.ops.quote_name
    meta = model._meta
    params = []
    assignments = []
    for name, value in values.items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    conditions = []
    for name, value in where.items():
        field = meta.get_field(name)
        conditions.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    return Statement(
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)}",
        params,
    )


def run(statements: Sequence[Statement]) -> None:
    """Run writes that do not read each other's results: on PostgreSQL as one statement
    (each a data-modifying `WITH`, so one round trip and one parse), elsewhere one by one.
    PostgreSQL runs a statement's `WITH` parts on one snapshot, in no set order: none may
    depend on another's effect (foreign keys are checked at commit, as Django creates
    them `DEFERRABLE INITIALLY DEFERRED`)."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql" or len(statements) == 1:
            for statement in statements:
                cursor.execute(statement.sql, statement.params)
            return
        *first, last = statements
        parts = ", ".join(f"w{n} AS ({statement.sql})" for n, statement in enumerate(first))
        cursor.execute(
            f"WITH {parts} {last.sql}",
            [param for statement in statements for param in statement.params],
        )


def saved(instance: Model) -> None:
    """Mark an instance written by `insert` as the ORM marks a saved one."""
    instance._state.adding = False
    instance._state.db = connection.alias
