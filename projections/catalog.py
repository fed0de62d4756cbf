"""The read models by name, at any version; and the versions serving now, for the projector."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from projections.runner import ReadModel
from projections.versions import VersionPointer

# (version, live) -> the read model writing that version; live: it serves (a rebuild's does not
# announce what it derives, such as segment changes, which were announced when they happened).
ModelFactory = Callable[[int, bool], ReadModel]

logger = logging.getLogger(__name__)


class Catalog:
    def __init__(self, factories: Mapping[str, ModelFactory], pointer: VersionPointer) -> None:
        self._factories = dict(factories)
        self.pointer = pointer
        self._built: dict[tuple[str, int, bool], ReadModel] = {}
        self._warned: set[tuple[str, int]] = set()

    @property
    def names(self) -> list[str]:
        return list(self._factories)

    def at(self, name: str, version: int, *, live: bool = True) -> ReadModel:
        """One instance per version: the segment model keeps caches that must not be shared."""
        if name not in self._factories:
            known = ", ".join(self._factories)
            raise LookupError(f"no read model named {name!r}; the read models are {known}")
        if (name, version, live) not in self._built:
            self._built[(name, version, live)] = self._factories[name](version, live)
        return self._built[(name, version, live)]

    def tracking(self, name: str, version: int) -> str:
        return self.at(name, version).tracking_key

    def serving(self) -> list[ReadModel]:
        """The serving version of every model, read from the pointer now, except a version
        stamped with another schema than this code writes: mixing two shapes in one version
        is what the rebuild exists to avoid. Instances of versions no longer serving are let go.
        """
        current = {n: v.serving for n, v in self.pointer.read(self._factories).items()}
        for key in [k for k in self._built if k[2] and current.get(k[0]) != k[1]]:
            del self._built[key]
        models = [self.at(name, version) for name, version in current.items()]
        stamps = self.pointer.schemas([m.tracking_key for m in models])
        usable = []
        for model, stamp in zip(models, stamps, strict=True):
            if stamp is None or stamp == model.schema:
                usable.append(model)
            elif (model.name, model.version) not in self._warned:
                self._warned.add((model.name, model.version))
                logger.warning(
                    "%s v%d holds schema %d and this code writes schema %d: not projecting it; "
                    "run `profiles rebuild %s` with this code, or run the code that matches",
                    model.name,
                    model.version,
                    stamp,
                    model.schema,
                    model.name,
                )
        return usable
