"""A dataset's categories and the contiguous labels the model trains on.

Categories map to labels 1..K in ascending category-id order (0 is the background), so the
number of classes and the mapping always come from the dataset itself, never from a setting.
The mapping travels inside every checkpoint so predictions go back to the dataset's ids; the
validate rule reports it. No torch here: the validator imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Categories:
    """The dataset's categories and their contiguous training labels."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Categories:
        """From COCO ``categories`` entries, in any order: labels follow ascending ids."""
        cats = sorted(records, key=lambda cat: cat["id"])
        return cls(tuple(cat["id"] for cat in cats), tuple(cat["name"] for cat in cats))

    @classmethod
    def from_list(cls, entries: Sequence[Mapping[str, Any]]) -> Categories:
        """From :meth:`to_list` output (a checkpoint's), keeping its order."""
        return cls(tuple(int(e["id"]) for e in entries), tuple(str(e["name"]) for e in entries))

    def to_list(self) -> list[dict[str, Any]]:
        return [{"id": i, "name": n} for i, n in zip(self.ids, self.names, strict=True)]

    def labelled(self) -> list[dict[str, Any]]:
        """Each category with the label training gives it (what the dataset's reports show)."""
        return [{**entry, "label": label} for label, entry in enumerate(self.to_list(), 1)]

    def __len__(self) -> int:
        return len(self.ids)

    def label_of(self, category_id: int) -> int:
        return self.ids.index(category_id) + 1

    def category_of(self, label: int) -> int:
        return self.ids[label - 1]
