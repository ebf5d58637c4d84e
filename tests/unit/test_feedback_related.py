"""Related tests are found statically and ordered by how closely they reach the saved module."""

from pathlib import Path

from selftune.server.feedback.related import ImportGraph, module_names, parse_file


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_module_names_cover_src_layouts():
    assert module_names("src/pkg/mod.py") == ["src.pkg.mod", "pkg.mod", "mod"]
    assert module_names("pkg/__init__.py") == ["pkg"]


def test_imports_include_relative_and_parent_packages():
    parsed = parse_file("pkg/sub/a.py", "from . import b\nfrom ..c import d\nimport x.y.z\nfoo.bar()\n", (0, 0))
    assert {"pkg.sub", "pkg.sub.b", "pkg.c", "pkg.c.d", "x", "x.y", "x.y.z", "pkg"} <= parsed.imports
    assert {"foo", "bar"} <= parsed.names


def test_a_file_that_does_not_parse_imports_nothing():
    assert parse_file("a.py", "def f(:\n", (0, 0)).imports == set()


def test_related_tests_order(tmp_path):
    write(
        tmp_path,
        {
            "src/shop/__init__.py": "from .cart import Cart\nfrom .price import total\n",
            "src/shop/cart.py": "class Cart:\n    pass\n",
            "src/shop/price.py": "from .cart import Cart\n\ndef total(cart):\n    return 0\n",
            "src/helpers.py": "X = 1\n",
            "src/report.py": "from shop.price import total\n",
            "tests/test_report.py": "import report\n",
            "tests/test_cart.py": "from shop.cart import Cart\n",
            "tests/test_price.py": "from shop.price import total\n",
            "tests/test_api.py": "import shop\n\ndef test():\n    shop.Cart()\n",
            "tests/test_misc.py": "import shop\n",
            "tests/test_nothing.py": "import os\n",
            "other/conftest.py": "from helpers import X\n",
            "other/test_fixture_user.py": "def test(x):\n    pass\n",
            ".venv/lib/test_ignored.py": "import shop.cart\n",
        },
    )
    graph = ImportGraph(tmp_path)
    # its own test file first; then two imports away (through shop/__init__ or shop/price), those that use
    # Cart first; then three away
    assert graph.related_tests("src/shop/cart.py") == [
        "tests/test_cart.py",
        "tests/test_api.py",
        "tests/test_misc.py",
        "tests/test_price.py",
        "tests/test_report.py",
    ]
    # the first run collects only the nearest: its own test file and direct importers
    assert graph.nearest_and_others("src/shop/cart.py") == (
        ["tests/test_cart.py"],
        ["tests/test_api.py", "tests/test_misc.py", "tests/test_price.py", "tests/test_report.py"],
    )
    assert graph.nearest_and_others("src/report.py") == (["tests/test_report.py"], [])
    # every test imports the package itself (`from shop.cart import` runs shop/__init__.py)
    assert graph.nearest_and_others("src/shop/__init__.py") == (
        ["tests/test_api.py", "tests/test_cart.py", "tests/test_misc.py", "tests/test_price.py"],
        ["tests/test_report.py"],
    )
    # no test imports it directly (a conftest does): the three most related
    assert graph.nearest_and_others("src/helpers.py") == (["other/test_fixture_user.py"], [])
    # a conftest's import reaches every test below it
    assert graph.related_tests("src/helpers.py") == ["other/test_fixture_user.py"]
    # a saved test file is its own first related test
    assert graph.related_tests("tests/test_nothing.py") == ["tests/test_nothing.py"]
    assert "tests/test_nothing.py" in graph.all_tests() and ".venv/lib/test_ignored.py" not in graph.all_tests()


def test_the_graph_follows_changes(tmp_path):
    write(tmp_path, {"mod.py": "X = 1\n", "tests/test_a.py": "import os\n"})
    graph = ImportGraph(tmp_path)
    assert graph.related_tests("mod.py") == []
    write(tmp_path, {"tests/test_a.py": "import mod\n# longer now\n"})
    assert graph.related_tests("mod.py") == ["tests/test_a.py"]
    (tmp_path / "tests" / "test_a.py").unlink()
    assert graph.related_tests("mod.py") == []
