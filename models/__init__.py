"""Model manifests (one TOML per model), shipped as package data `selftune.models`."""
