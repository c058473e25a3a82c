"""The base every service's table classes share: new rows are built in one step.

SQLModel builds a table row by calling `setattr` for each field, and every call runs SQLAlchemy's
attribute events and then pydantic's `__setattr__` checks: ≈ 1 µs a field, 35 µs for a six-field
timeline step and several times that for an incident. Grading builds about ten rows per message
it grades and notify several per alert, so this was 8 % and 15 % of their CPU under load.

A row that is being created needs none of that: no attribute listener or mutable-type tracking is
registered on these tables, and SQLAlchemy's INSERT reads the values from the instance's dict. So
`__init__` writes the given values and the fields' defaults into that dict directly, and records
which fields were given, as SQLModel's own construction does (no validation either way: SQLModel
does not validate table models). Later assignments go through `setattr` as always, so changes to a
row after it exists are tracked as before. A class this shortcut does not cover (relationships,
extra fields, a post-init hook, a default factory that reads other fields) is built SQLModel's way.
"""

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic.fields import FieldInfo
from sqlalchemy.orm import configure_mappers
from sqlmodel import SQLModel
from sqlmodel.main import finish_init

# How a field is filled when the caller does not give it.
_REQUIRED, _CONSTANT, _FACTORY, _COPY = range(4)
# Defaults of these types are used as they are (pydantic would copy them, to no effect).
_IMMUTABLE = (type(None), bool, int, float, str, bytes, tuple, frozenset, datetime, Enum)

# class → ((field name, alias or None, how, default or factory or FieldInfo), …), or None when the
# class must be built SQLModel's way.
_PLANS: dict[type, tuple[tuple[str, str | None, int, Any], ...] | None] = {}


def _default(field: FieldInfo) -> tuple[int, Any]:
    if field.is_required():
        return _REQUIRED, None
    if field.default_factory is not None:
        return _FACTORY, field.default_factory
    if isinstance(field.default, _IMMUTABLE):
        return _CONSTANT, field.default
    return _COPY, field  # a mutable default: pydantic hands out a copy each time


def _plan(cls: type) -> tuple[tuple[str, str | None, int, Any], ...] | None:
    direct = (
        not cls.__sqlmodel_relationships__
        and cls.model_config.get("extra") != "allow"
        and not cls.__pydantic_post_init__
        and not any(f.default_factory_takes_validated_data for f in cls.model_fields.values())
    )
    plan = (
        tuple(
            (name, f.alias if f.alias != name else None, *_default(f)) for name, f in cls.model_fields.items()
        )
        if direct
        else None
    )
    _PLANS[cls] = plan
    return plan


class DirectInit:
    """Mixin for a service's table base (before SQLModel): builds new rows without per-field setattr."""

    def __init__(self, **data: Any) -> None:
        if not finish_init.get():  # model_validate() asks only for SQLAlchemy's state, as in SQLModel
            return
        cls = type(self)
        plan = _PLANS[cls] if cls in _PLANS else _plan(cls)
        if plan is None:
            super().__init__(**data)
            return
        values = self.__dict__  # SQLAlchemy's instance state is already in it
        given = set()
        for name, alias, how, default in plan:
            if alias is not None and alias in data:
                values[name] = data[alias]
            elif name in data:
                values[name] = data[name]
            else:
                if how == _CONSTANT:
                    values[name] = default
                elif how == _FACTORY:
                    values[name] = default()
                elif how == _COPY:
                    values[name] = default.get_default(call_default_factory=True)
                continue
            given.add(name)
        object.__setattr__(self, "__pydantic_fields_set__", given)


def built_as_sqlmodel(model: type, **data: Any):
    """A new row built SQLModel's way (setattr per field): the reference `DirectInit` is checked and
    measured against."""
    if not model.__mapper__.configured:
        configure_mappers()  # as the first construction of a mapped class would
    row = model.__new__(model)
    model._sa_class_manager._new_state_if_none(row)
    SQLModel.__init__(row, **data)
    return row
