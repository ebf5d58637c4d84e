"""Git history as edit steps, on a real repository; export and forget on the journal that results."""

import subprocess

import git
import pytest

from selftune.server.journal.history import import_history, is_test_path
from selftune.server.journal.queries import export, forget, stats
from selftune.server.journal.store import Store, connect


def commit(repo, files: dict[str, str | None], message: str) -> str:
    for path, text in files.items():
        target = repo / path
        if text is None:
            subprocess.run(["git", "rm", "-q", path], cwd=repo, check=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        subprocess.run(["git", "add", path], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "-m", message], cwd=repo, check=True
    )
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    commit(tmp_path, {"pkg/calc.py": "def add(a, b):\n    return a + b\n", "README.md": "hi\n"}, "calc: add")
    commit(
        tmp_path,
        {
            "pkg/calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
            "tests/test_calc.py": "from pkg.calc import sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n",
        },
        "calc: sub, with a test\n\nLonger body\nover two lines.",
    )
    commit(tmp_path, {"notes.txt": "not python\n"}, "notes only")
    commit(tmp_path, {"pkg/old.py": "x = 1\n"}, "add old")
    commit(tmp_path, {"pkg/old.py": None}, "remove old")
    return tmp_path


def test_history_is_imported_as_steps_per_commit_and_file(repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("j") / "journal.sqlite3"
    store = Store(path)
    seen = []
    count, head = import_history(git.Repo(repo), store.put, depth=50, progress=lambda d, t: seen.append((d, t)))
    assert store.flush(5)
    assert count == 4 and seen[-1] == (4, 4)  # the commit touching only notes.txt is not a Python change
    conn = connect(path, readonly=True)
    commits = dict(conn.execute("SELECT message, code_and_tests FROM commits").fetchall())
    assert commits == {
        "calc: add": 0,
        "calc: sub, with a test\n\nLonger body\nover two lines.": 1,
        "add old": 0,
        "remove old": 0,
    }
    sequences = {r["path"]: r["steps"] for r in export(conn) if r["type"] == "edit_sequence"}
    assert [s["diff"] for s in sequences["pkg/calc.py"]] == [
        "@@ -0,0 +1,2 @@\n+def add(a, b):\n+    return a + b",
        "@@ -2,0 +3,4 @@\n+\n+\n+def sub(a, b):\n+    return a - b",
    ]
    assert sequences["pkg/old.py"][-1]["diff"] == "@@ -1 +0,0 @@\n-x = 1"
    assert sequences["tests/test_calc.py"][0]["code_and_tests"] is True
    assert "README.md" not in sequences
    # Importing again from the HEAD just imported adds nothing.
    assert import_history(git.Repo(repo), store.put, depth=50, since=head)[0] == 0
    store.close()


def test_forget_a_path_removes_its_text_from_the_file(repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("j") / "journal.sqlite3"
    store = Store(path)
    import_history(git.Repo(repo), store.put, depth=50)
    store.close()
    deleted = forget(connect(path), ["pkg/calc.py"])
    assert deleted["steps"] == 2
    assert b"return a - b" not in path.read_bytes()
    s = stats(connect(path, readonly=True), path)
    assert s["history_steps"] == 3 and s["history_commits"] == 4
    with pytest.raises(ValueError):
        forget(connect(path))


def test_test_paths():
    assert all(map(is_test_path, ["tests/test_a.py", "pkg/test_b.py", "b_test.py", "conftest.py", "src/testing/x.py"]))
    assert not any(map(is_test_path, ["pkg/contest.py", "latest.py", "pkg/testament.py"]))


def test_a_workspace_no_server_opened_catches_up_with_its_history_once(repo):
    from selftune.server.journal import catch_up_history

    seen = []
    assert catch_up_history(repo, 50, progress=lambda d, t: seen.append((d, t))) == 4 and seen[-1] == (4, 4)
    conn = connect(repo / ".selftune" / "journal.sqlite3", readonly=True)
    assert conn.execute("SELECT count(*) FROM commits").fetchone()[0] == 4
    assert "/.selftune/" in (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert catch_up_history(repo, 50) == 0  # nothing new since
    commit(repo, {"pkg/calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"}, "mul")
    assert catch_up_history(repo, 50) == 1
    assert conn.execute("SELECT count(*) FROM commits").fetchone()[0] == 5
    assert catch_up_history(repo, 0) == 0
    conn.close()
