"""Rows turned into model instances without running `Model.__init__`.

Django builds every row it loads through `Model.from_db`, which calls `Model.__init__`:
the `pre_init` and `post_init` signals, a loop over every field with `setattr`, and the
checks a constructor needs for keyword arguments that a loaded row never has. For a
message that was 20 µs, against under 3 µs to fill the instance's `__dict__` directly,
and a history page builds a hundred such rows, a chat list two hundred (issue 14).

`from_db` is the hook Django documents for customizing model loading. `LoadedFast`
overrides it for the project's models: where it can prove the result is what
`Model.__init__` would build, it fills `__dict__` itself; otherwise it asks Django. It
can prove that when no receiver listens to the model's `pre_init` or `post_init` (an
`ImageField`'s dimensions, a test's spy) and every concrete field's descriptor writes a
loaded value to `__dict__` unchanged, as the plain column, foreign key and file
descriptors do.
"""

from typing import Any, Self

from django.db.models import DEFERRED, Model
from django.db.models.base import ModelState
from django.db.models.fields.files import FileDescriptor
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

# Descriptors whose `__set__` (if any) stores the value in `__dict__` as given, on an
# instance with nothing cached yet. `ImageFileDescriptor` also updates dimension fields,
# so only these exact types qualify.
PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute, FileDescriptor)

# Per model: its concrete fields' attnames in order, or None when a descriptor is not
# plain (then Django builds every row of it).
_attnames: dict[type[Model], list[str] | None] = {}


def _plain_attnames(model: type[Model]) -> list[str] | None:
    try:
        return _attnames[model]
    except KeyError:
        pass
    fields = model._meta.concrete_fields
    plain = all(type(model.__dict__.get(f.attname)) in PLAIN_DESCRIPTORS for f in fields)
    found = _attnames[model] = [f.attname for f in fields] if plain else None
    return found


class LoadedFast:
    """Mixin for a concrete model: loaded rows skip `Model.__init__` when that changes
    nothing (see the module's docstring)."""

    @classmethod
    def from_db(cls, db: str | None, field_names: list[str], values: Any) -> Self:
        attnames = _plain_attnames(cls)  # type: ignore[arg-type]
        if attnames is None or pre_init.has_listeners(cls) or post_init.has_listeners(cls):
            return super().from_db(db, field_names, values)  # type: ignore[misc]
        new = cls.__new__(cls)
        state = ModelState()
        state.adding = False
        state.db = db
        data = new.__dict__
        data["_state"] = state
        # As `Model.from_db`: a full row is in the fields' order; a partial one is named.
        names = attnames if len(values) == len(attnames) else field_names
        for name, value in zip(names, values, strict=True):
            if value is not DEFERRED:
                data[name] = value
        return new
