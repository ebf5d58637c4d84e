import pytest
from inventory import Item, Stock

PEN = Item("pen", "Ballpoint pen", 120)
PAD = Item("pad", "Notepad", 350)


def test_add_and_count():
    stock = Stock()
    stock.add(PEN, 3)
    assert stock.count("pen") == 3


def test_remove_all_forgets_the_item():
    stock = Stock()
    stock.add(PEN, 2)
    stock.remove("pen", 2)
    assert stock.count("pen") == 0
    assert "pen" not in stock.items


def test_cannot_remove_more_than_held():
    stock = Stock()
    stock.add(PAD)
    with pytest.raises(ValueError):
        stock.remove("pad", 2)


def test_value():
    stock = Stock()
    stock.add(PEN, 2)
    stock.add(PAD, 1)
    assert stock.value_cents() == 2 * 120 + 350
