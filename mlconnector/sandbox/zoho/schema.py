"""One org's modules and fields: the standard ones every org has, plus the custom fields and custom modules its admin
added (through Setup or the metadata APIs). Writes are validated against it, and the metadata APIs read it."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

from .currencies import FIELDS as CURRENCY_FIELDS
from .currencies import Currencies
from .fields import (CUSTOM_MODULE_FIELDS, PAIR_CUSTOM_FIELDS, PAIR_CUSTOM_MODULES, STANDARD_FIELDS, SYSTEM, Field,
                     label_for)
from .modules import MODULES, ModuleSpec

_FIELD_ID_BASE = 5725767 * 10**12 + 700001
_MODULE_ID_BASE = 5725767 * 10**12 + 900001


class OrgSchema:
    """Modules by API name (standard first, then custom, in creation order) and each module's fields."""

    def __init__(self, *, bare: bool = False) -> None:
        self._field_ids: Iterator[int] = itertools.count(_FIELD_ID_BASE)
        self._module_ids: Iterator[int] = itertools.count(_MODULE_ID_BASE)
        self.modules: dict[str, ModuleSpec] = dict(MODULES)
        self.custom_modules: set[str] = set()
        self.fields: dict[str, dict[str, Field]] = {}
        self.currencies = Currencies()
        for name in MODULES:
            self._add_standard_fields(name, STANDARD_FIELDS.get(name, ()))
        if not bare:
            for api_name, plural, singular in PAIR_CUSTOM_MODULES:
                self.add_module(api_name, plural, singular)
            for custom in PAIR_CUSTOM_FIELDS:
                self.add_field(custom.module, Field(custom.api_name, label_for(custom.api_name), custom.data_type,
                                                    custom.length, custom=True, lookup=custom.lookup))

    def _add_standard_fields(self, module: str, fields: tuple[Field, ...]) -> None:
        spec = self.modules[module]
        own = {f.api_name: f for f in fields}
        table: dict[str, Field] = {}
        for api_name, label, data_type, _ in SYSTEM:
            if api_name not in own:
                table[api_name] = Field(api_name, label, data_type).with_id(self._next_field_id())
        for f in fields:
            table[f.api_name] = dataclasses.replace(f, mandatory=f.api_name in spec.mandatory,
                                                    id=self._next_field_id())
        self.fields[module] = table

    def _next_field_id(self) -> str:
        return str(next(self._field_ids))

    # -- look-ups --------------------------------------------------------------------------------------------------
    def spec(self, module: str, edition: str) -> ModuleSpec | None:
        """The module's spec if it exists in this edition; Zoho matches module API names in URLs without regard
        to case, so ``accounts`` finds Accounts."""
        spec = self.modules.get(module) or next(
            (s for name, s in self.modules.items() if name.lower() == module.lower()), None)
        if spec is None or (spec.editions is not None and edition not in spec.editions):
            return None
        return spec

    def field(self, module: str, api_name: str) -> Field | None:
        return self.fields[module].get(api_name)

    def field_by_id(self, module: str, field_id: str) -> Field | None:
        return next((f for f in self.fields[module].values() if f.id == field_id), None)

    def unique(self, module: str) -> set[str]:
        return {name for name, f in self.fields[module].items() if f.unique}

    def ids(self) -> dict[str, str]:
        return {name: spec.id for name, spec in self.modules.items()}

    # -- changes an admin makes ---------------------------------------------------------------------------------------
    def enable_multi_currency(self, home: str) -> list[str]:
        """Multi-currency on (currencies.py): Currency and Exchange_Rate join every module that keeps amounts;
        returns those modules."""
        self.currencies.enable(home)
        modules = [name for name, table in self.fields.items()
                   if any(f.data_type == "currency" for f in table.values())]
        for name in modules:
            self.add_field(name, Field("Currency", "Currency", "picklist"))
            self.add_field(name, Field("Exchange_Rate", "Exchange Rate", "double"))
        return modules

    def multi_currency(self, module: str) -> bool:
        return self.currencies.enabled and all(name in self.fields[module] for name in CURRENCY_FIELDS)

    def add_field(self, module: str, new: Field) -> Field:
        """A custom field (its id assigned here); a lookup also becomes one of the module's lookups."""
        made = new.with_id(self._next_field_id()) if not new.id else new
        self.fields[module][made.api_name] = made
        if made.lookup:
            spec = self.modules[module]
            self.modules[module] = dataclasses.replace(spec, lookups={**spec.lookups, made.api_name: made.lookup})
        return made

    def set_unique(self, module: str, api_name: str, unique: bool = True) -> Field:
        current = self.fields[module][api_name]
        changed = dataclasses.replace(current, unique=unique)
        self.fields[module][api_name] = changed
        return changed

    def add_module(self, api_name: str, plural: str, singular: str) -> ModuleSpec:
        """A custom module with Zoho's default fields (Name mandatory, Owner, Email ...)."""
        spec = ModuleSpec(api_name, str(next(self._module_ids)), singular, ("Name",), ("Name",), "Name",
                          plural_label=plural)
        self.modules[api_name] = spec
        self.custom_modules.add(api_name)
        self._add_standard_fields(api_name, CUSTOM_MODULE_FIELDS)
        return spec
