"""What the journal may record, and what it must blank out first.

Three rules, applied on the journal's writer thread before anything reaches
the disk:

1. Files that git ignores are never recorded (`Rules.allows`, which asks git
   once per path and remembers the answer), nor anything outside the workspace
   or inside `.git/` and `.selftune/`.
2. Files that typically hold secrets (`.env*`, private keys, certificates,
   keystores, credential files) are never recorded, whatever git says.
3. Likely secrets inside recorded text are masked (`redact`): private key
   blocks, cloud and VCS token formats, and long high-entropy values assigned
   to names such as `password`, `token` or `secret`. Masking replaces each
   secret character with `*` and keeps newlines, so that positions of later
   edits still line up when a document is rebuilt from the journal.

A secret typed one character at a time reaches the journal as single-character
edits (no edit holds it whole); the snapshots and edit steps built from those
edits are masked.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
import threading
from collections import Counter
from pathlib import Path, PurePosixPath

from ..workspace import DIRNAME

log = logging.getLogger(__name__)

SECRET_FILES = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.crt",
    "*.cer",
    "*.der",
    "*.csr",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.ppk",
    "*.gpg",
    "*.asc",
    "*.kdbx",
    "credentials",
    "credentials.*",
    "*secret*.json",
    "*secrets*.y*ml",
    "service-account*.json",
)
NEVER_DIRS = {".git", DIRNAME, ".hg", ".svn"}


def is_secret_file(path: str | Path) -> bool:
    name = PurePosixPath(str(path)).name.lower()
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_FILES)


# Token formats that are secrets on their own, wherever they appear.
_TOKENS = [
    r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",  # AWS access key id
    r"gh[pousr]_[A-Za-z0-9]{36,255}",  # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{22,255}",
    r"glpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
    r"AIza[0-9A-Za-z_\-]{35}",  # Google API key
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{32,}",  # OpenAI / Anthropic style
    r"(?:sk|rk)_live_[0-9A-Za-z]{24,}",  # Stripe
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-[A-Za-z0-9_\-]{50,}",
    r"eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",  # JWT
]
_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(_TOKENS) + r")")
_PRIVATE_KEY_RE = re.compile(
    r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?P<body>.*?)(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
# `name = "value"`, `name: value`, `"name": "value"` where the name says secret. Matched only where
# `str.find` saw one of the telling words (a regex scan of every position is 5x slower on diffs).
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential")
_ASSIGNED_RE = re.compile(
    r"""(?ix)
    (?:pass(?:word|wd)?|pwd|secret|token|key|auth|credential)
    [A-Za-z0-9_.\-]*["']?\s*(?:=|:|:=|=>)\s*
    (?P<quote>["'`]?)(?P<value>[A-Za-z0-9+/=_\-.~!@#$%^&*]{12,})(?P=quote)
    """
)


def _assignments(text: str):
    lower = text.lower()
    for word in _SECRET_WORDS:
        at = lower.find(word)
        while at >= 0:
            m = _ASSIGNED_RE.match(text, at)
            if m:
                yield m
            at = lower.find(word, at + len(word))


_CODE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_AWS_SECRET_RE = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])")


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _likely_secret_value(value: str) -> bool:
    if len(value) < 12 or value.isidentifier() and value.islower():
        return False  # `token = get_token` style code, not a literal secret
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    return _entropy(value) >= 3.0 and classes >= 2


def redact(text: str) -> str:
    """`text` with likely secrets masked by `*` (newlines kept, length unchanged)."""
    if not text or len(text) < 12:
        return text
    spans: list[tuple[int, int]] = []
    if "PRIVATE KEY" in text:
        for m in _PRIVATE_KEY_RE.finditer(text):
            spans.append((m.start("body"), m.end("body")))
    for m in _TOKEN_RE.finditer(text):
        spans.append((m.start(), m.end()))
    for m in _assignments(text):
        value = m.group("value")
        if (
            not m.group("quote")
            and _CODE_RE.fullmatch(value)
            and ("." in value or "_" in value or not any(c.isdigit() for c in value))
        ):
            continue  # `token = tokenizer.next_token()`: code, not a literal
        if _likely_secret_value(value):
            spans.append((m.start("value"), m.end("value")))
    if "AKIA" in text or "aws" in text.lower():
        # AWS secret access keys have no prefix: mask 40-character base64 runs near AWS context.
        for m in _AWS_SECRET_RE.finditer(text):
            if _likely_secret_value(m.group()):
                spans.append((m.start(), m.end()))
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        for i in range(start, end):
            if chars[i] not in "\r\n":
                chars[i] = "*"
    return "".join(chars)


class Rules:
    """Which workspace files may be recorded; git is asked once per path."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self._ignored: dict[str, bool] = {}
        self._lock = threading.Lock()
        try:
            import git

            self._repo: git.Repo | None = git.Repo(self.root, search_parent_directories=True)
        except Exception:  # not a git repository, or git is missing: no ignore rules to apply
            self._repo = None

    @property
    def repo(self):
        return self._repo

    def relative(self, path: str | Path) -> str | None:
        """`path` relative to the workspace (POSIX), or None when it is outside."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def allows(self, path: str | Path, *, ask_git: bool = True) -> bool:
        rel = self.relative(path)
        if rel is None or rel == ".":
            return False
        if NEVER_DIRS.intersection(PurePosixPath(rel).parts) or is_secret_file(rel):
            return False
        return not (ask_git and self.git_ignores(rel))

    def git_ignores(self, rel: str) -> bool:
        if self._repo is None:
            return False
        with self._lock:
            known = self._ignored.get(rel)
            if known is not None:
                return known
            try:
                ignored = bool(self._repo.ignored(str(self.root / rel)))
            except Exception as exc:  # git failed: be safe and record nothing for this path
                log.warning("git check-ignore failed for %s: %s", rel, exc)
                ignored = True
            if len(self._ignored) > 100_000:
                self._ignored.clear()
            self._ignored[rel] = ignored
            return ignored

    def forget_ignore_cache(self) -> None:
        """After .gitignore changes, ask git again."""
        with self._lock:
            self._ignored.clear()
