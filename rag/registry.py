"""One kind of registry for every kind of extension: answer backends, document formats, retrieval stages
and evaluation metrics.

Each is a read-only mapping by name, filled one way (`register`, one line per extension where its kind is
defined), refusing a second extension under a name already taken instead of silently replacing the first,
and open to other packages through an entry-point group, as `llm` plugins are:

    [project.entry-points."rag.backends"]
    mine = "my_package.backend:BACKEND"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from rag.errors import ConfigError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, names: Callable[[T], Iterable[str]], group: str | None = None) -> None:
        """`kind` names one extension in errors ("backend"); `names` gives the names an extension is
        registered under (a format has one per file suffix); `group` is the entry-point group other
        packages register through."""
        self.kind, self._names, self.group = kind, names, group
        self._items: dict[str, T] = {}

    def register(self, item: T) -> T:
        names = list(self._names(item))
        taken = [name for name in names if name in self._items and self._items[name] is not item]
        if taken:
            raise ConfigError(
                f"two {self.kind}s are registered as {', '.join(map(repr, taken))}",
                hint="rename one of them, or uninstall the package that brings the other",
            )
        for name in names:
            self._items[name] = item
        return item

    def unregister(self, item: T) -> None:
        """Take `item` out under every name it was registered as (a test's extension, say)."""
        for name in [name for name, registered in self._items.items() if registered is item]:
            del self._items[name]

    def load_entry_points(self, add: Callable[[T], object] | None = None) -> None:
        """Register what installed packages declare in the entry-point group (through `add`, when the kind
        needs more than a name, as a retrieval stage needs its place)."""
        if self.group is not None:
            for entry in entry_points(group=self.group):
                (add or self.register)(entry.load())

    def named(self, name: str) -> T:
        """The extension named `name`, or an error listing the ones there are."""
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}", hint=f"use one of: {', '.join(self._items)}")
        return self._items[name]

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
