"""The read models by name, at any version; and the versions serving now, for the projector."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from projections.runner import ReadModel
from projections.versions import VersionPointer

ModelFactory = Callable[[int], ReadModel]  # version -> the read model writing that version


class Catalog:
    def __init__(self, factories: Mapping[str, ModelFactory], pointer: VersionPointer) -> None:
        self._factories = dict(factories)
        self.pointer = pointer
        self._built: dict[tuple[str, int], ReadModel] = {}

    @property
    def names(self) -> list[str]:
        return list(self._factories)

    def at(self, name: str, version: int) -> ReadModel:
        """One instance per version: the segment model keeps caches that must not be shared."""
        if name not in self._factories:
            known = ", ".join(self._factories)
            raise LookupError(f"no read model named {name!r}; the read models are {known}")
        if (name, version) not in self._built:
            self._built[(name, version)] = self._factories[name](version)
        return self._built[(name, version)]

    def tracking(self, name: str, version: int) -> str:
        return self.at(name, version).tracking_key

    def serving(self) -> list[ReadModel]:
        """The serving version of every model, read from the pointer now. Instances of
        versions that no longer serve are let go."""
        current = {n: v.serving for n, v in self.pointer.read(self._factories).items()}
        for key in [k for k in self._built if current.get(k[0]) != k[1]]:
            del self._built[key]
        return [self.at(name, version) for name, version in current.items()]
