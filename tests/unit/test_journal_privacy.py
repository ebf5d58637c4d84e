"""Secrets are masked before they reach the journal; files that hold secrets are never recorded."""

import subprocess

from selftune.server.journal.privacy import Rules, is_secret_file, redact

AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PRIVATE_KEY = """-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEA1c2Zp3mKq9oXbQ0h8p5rG1Sx0vT5lQk3bW1xY2Zq8t4nA7cD
f3k9JtQm2WvX8yZ1oB4hN6sE0rU5iL7aC9dF2gH3jK4lM5nO6pQ7rS8tU9vW0xYz
-----END RSA PRIVATE KEY-----"""
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"


def test_token_formats_and_key_blocks_are_masked_in_place():
    text = f'aws_id = "{AWS_ID}"\nsecret_access = "{AWS_SECRET}"\nKEY = """{PRIVATE_KEY}"""\ngh = "{GITHUB}"\n'
    masked = redact(text)
    for secret in (AWS_ID, AWS_SECRET, GITHUB, "MIIEowIBAAKCAQEA1c2Zp3mKq9oXbQ0h8p5rG1Sx0vT5lQk3bW1xY2Zq8t4nA7cD"):
        assert secret not in masked
    assert len(masked) == len(text) and masked.count("\n") == text.count("\n")
    assert "-----BEGIN RSA PRIVATE KEY-----" in masked  # what it was stays readable, not its body


def test_high_entropy_values_assigned_to_secret_names_are_masked():
    masked = redact('DB_PASSWORD = "Xk9#mP2$vL8qR4wZ"\nconfig = {"api_key": "f3A9kLm2Qp8Zr7Tx"}\n')
    assert "Xk9#mP2$vL8qR4wZ" not in masked and "f3A9kLm2Qp8Zr7Tx" not in masked
    assert "DB_PASSWORD" in masked and "api_key" in masked


def test_ordinary_code_is_left_alone():
    code = (
        "token = tokenizer.next_token()\npassword = prompt_for_password()\n"
        'sha = "da39a3ee5e6b4b0d3255bfef95601890afd80709"\nsecret_santa = ["alice", "bob"]\n'
    )
    assert redact(code) == code


def test_secret_file_names():
    for name in (
        ".env",
        ".env.local",
        "config/prod.env",
        "server.key",
        "cert.pem",
        "id_rsa",
        "id_ed25519.pub",
        "credentials.json",
        "keystore.jks",
    ):
        assert is_secret_file(name), name
    for name in ("env.py", "keys.py", "environment.md", "tokenizer.py"):
        assert not is_secret_file(name), name


def test_rules_follow_gitignore_and_never_record_selftune_or_git(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("build/\n*.log\n")
    rules = Rules(tmp_path)
    assert rules.allows(tmp_path / "pkg" / "mod.py")
    assert not rules.allows(tmp_path / "build" / "gen.py")
    assert not rules.allows(tmp_path / "run.log")
    assert not rules.allows(tmp_path / ".selftune" / "journal.sqlite3")
    assert not rules.allows(tmp_path / ".git" / "config")
    assert not rules.allows(tmp_path / ".env")
    assert not rules.allows(tmp_path.parent / "elsewhere.py")
