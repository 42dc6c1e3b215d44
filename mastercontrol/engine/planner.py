"""Reload planning: desired configuration vs what runs now -> what to add, remove, restart.

Pure logic: compares two name -> WorkloadConfig maps. "Changed" means any field that changes
what runs differs (WorkloadConfig equality ignores where the file lives). Imports only the
standard library and the config model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mastercontrol.config.model import WorkloadConfig


@dataclass(frozen=True)
class ReloadPlan:
    add: tuple[str, ...]
    remove: tuple[str, ...]
    change: tuple[str, ...]
    unchanged: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "add": list(self.add),
            "remove": list(self.remove),
            "change": list(self.change),
            "unchanged": list(self.unchanged),
        }


def plan_reload(
    current: Mapping[str, WorkloadConfig], desired: Mapping[str, WorkloadConfig]
) -> ReloadPlan:
    """Split names into added, removed, changed and unchanged, each sorted."""
    add = sorted(set(desired) - set(current))
    remove = sorted(set(current) - set(desired))
    both = sorted(set(current) & set(desired))
    change = [n for n in both if current[n] != desired[n]]
    unchanged = [n for n in both if current[n] == desired[n]]
    return ReloadPlan(tuple(add), tuple(remove), tuple(change), tuple(unchanged))
