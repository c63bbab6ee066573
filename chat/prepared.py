"""Querysets compiled once per shape, then run again with other values.

Django builds and compiles a queryset's SQL on every evaluation: for a chat list's newest
messages (fifty `(chat_id, seq)` pairs, with their authors) building the filter and
compiling it was a third of the query's CPU, and a history page paid the same for a
statement that differs from the last one only in its parameters (py-spy over HTTP,
bench/RESULTS.md, issue 14). Here a caller names a queryset's shape (everything its SQL
text depends on) and its parameters, in the order Django puts them. The first run of a
shape builds the queryset, compiles it and checks the caller's parameters against
Django's own: only if they match is the SQL kept, and later runs of the shape execute it
with their parameters and build the rows as Django's `ModelIterable` does (foreign keys'
rows included). A shape whose parameters do not match is never kept, and runs through
the ORM every time: a wrong shape costs speed, never a wrong answer.
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from threading import Lock
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

# Shapes vary with the fields a query selects and its page size: a few hundred at most.
MAX_SHAPES = 1024


@dataclass(frozen=True)
class Shaped:
    """A queryset to build only when its shape has no SQL kept yet.

    `key` must name everything the SQL text depends on (joins, page size, which filters);
    `params` are the statement's parameters as Django prepares them (UUIDs, integers),
    in Django's order."""

    key: Hashable
    build: Callable[[], QuerySet]
    params: Sequence[Any]


class _Compiled:
    """One shape's SQL and what turns its rows into model instances."""

    def __init__(self, queryset: QuerySet, sql: str, compiler: Any) -> None:
        self.sql = sql
        select, klass_info = compiler.select, compiler.klass_info
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start : self.end]]
        self.annotations = tuple((compiler.annotation_col_map or {}).items())
        self.populators = get_related_populators(klass_info, select, queryset.db)
        columns = [column[0] for column in select[: compiler.col_count]]
        self.converters = tuple(compiler.get_converters(columns).items())

    def run(self, params: Sequence[Any]) -> list[Model]:
        # The thread's own connection, looked up once: `connection` is a proxy that finds
        # it again on every use, and the loop below would ask it per row and per value.
        database = connections[DEFAULT_DB_ALIAS]
        with database.cursor() as cursor:
            cursor.execute(self.sql, params)
            fetched = cursor.fetchall()
        alias, found = database.alias, []
        for fetched_row in fetched:
            row = list(fetched_row) if self.converters else fetched_row
            for position, (converters, expression) in self.converters:
                value = row[position]
                for convert in converters:
                    value = convert(value, expression, database)
                row[position] = value
            instance = self.model.from_db(alias, self.init_list, row[self.start : self.end])
            for populator in self.populators:
                populator.populate(row, instance)
            for name, position in self.annotations:
                setattr(instance, name, row[position])
            found.append(instance)
        return found


class PreparedQueries:
    """Each shape's SQL, compiled once per database and kept while it matches Django's."""

    def __init__(self, maxsize: int = MAX_SHAPES) -> None:
        self._compiled: OrderedDict[Hashable, _Compiled | None] = OrderedDict()
        self._maxsize = maxsize
        self._lock = Lock()

    def fetch(self, shaped: Shaped) -> list[Model]:
        key = (connection.alias, connection.vendor, shaped.key)
        try:
            compiled = self._compiled[key]
        except KeyError:
            compiled, rows = self._compile(shaped)
            with self._lock:
                self._compiled[key] = compiled
                while len(self._compiled) > self._maxsize:
                    self._compiled.popitem(last=False)
            return rows
        if compiled is None:
            return list(shaped.build())
        return compiled.run(shaped.params)

    @staticmethod
    def _compile(shaped: Shaped) -> tuple[_Compiled | None, list[Model]]:
        """The shape's SQL if the caller's parameters are Django's, and this run's rows."""
        queryset = shaped.build()
        if queryset._known_related_objects or queryset._prefetch_related_lookups:
            return None, list(queryset)
        compiler = queryset.query.get_compiler(using=queryset.db)
        try:
            sql, params = compiler.as_sql()
        except Exception:  # an empty result set and the like: the ORM's own way
            return None, list(queryset)
        columns = [column[0] for column in compiler.select[: compiler.col_count]]
        if list(params) != list(shaped.params) or compiler.has_composite_fields(columns):
            return None, list(queryset)
        compiled = _Compiled(queryset, sql, compiler)
        return compiled, compiled.run(shaped.params)

    def clear(self) -> None:
        with self._lock:
            self._compiled.clear()


prepared = PreparedQueries()
