"""Items, quantities and the stock that holds them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    price_cents: int

    def __post_init__(self) -> None:
        if self.price_cents < 0:
            raise ValueError(f"price of {self.sku} must not be negative")


@dataclass
class Stock:
    items: dict[str, Item] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, item: Item, count: int = 1) -> None:
        if count <= 0:
            raise ValueError("count must be positive")
        self.items[item.sku] = item
        self.counts[item.sku] = self.counts.get(item.sku, 0) + count

    def remove(self, sku: str, count: int = 1) -> None:
        have = self.counts.get(sku, 0)
        if count > have:
            raise ValueError(f"only {have} of {sku} in stock")
        self.counts[sku] = have - count
        if self.counts[sku] == 0:
            del self.counts[sku]
            del self.items[sku]

    def count(self, sku: str) -> int:
        return self.counts.get(sku, 0)

    def value_cents(self) -> int:
        return sum(self.items[sku].price_cents * n for sku, n in self.counts.items())
