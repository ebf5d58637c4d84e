from selftune.server.settings import Settings, camel, describe, parse, snake


def test_defaults_when_nothing_is_given():
    settings, problems = parse(None)
    assert settings == Settings()
    assert problems == []


def test_camel_case_keys_under_selftune_section():
    settings, problems = parse({"selftune": {"maxTokens": 32, "temperature": 0.5, "inlineCompletion": False}})
    assert problems == []
    assert (settings.max_tokens, settings.temperature, settings.inline_completion) == (32, 0.5, False)


def test_bad_value_names_the_key_and_the_default_used():
    settings, problems = parse({"maxTokens": "lots", "temperature": 9, "multiline": "yes"})
    assert settings.max_tokens == 64 and settings.temperature == 0.0 and settings.multiline is True
    assert len(problems) == 3
    assert any("'maxTokens'" in p and "using the default 64" in p for p in problems)
    assert any("'temperature'" in p and "outside" in p for p in problems)
    assert any("'multiline'" in p and "true or false" in p for p in problems)


def test_bad_value_keeps_other_good_values():
    settings, problems = parse({"maxTokens": -1, "threads": 2})
    assert settings.threads == 2 and settings.max_tokens == 64 and len(problems) == 1


def test_unknown_key_is_reported_not_fatal():
    settings, problems = parse({"maxTokns": 3})
    assert settings == Settings()
    assert problems == ["unknown selftune setting 'maxTokns' is ignored"]


def test_not_an_object():
    settings, problems = parse([1, 2])
    assert settings == Settings() and "must be an object" in problems[0]


def test_update_keeps_base_values():
    base, _ = parse({"maxTokens": 16})
    settings, _ = parse({"temperature": 0.2}, base)
    assert settings.max_tokens == 16 and settings.temperature == 0.2


def test_integral_float_is_accepted_for_int():
    settings, problems = parse({"maxTokens": 32.0})
    assert settings.max_tokens == 32 and problems == []


def test_key_names_round_trip():
    for key, _, doc in describe():
        assert camel(snake(key)) == key and doc


def test_the_vscode_extension_mirrors_the_server_schema():
    """Every server setting is a VS Code setting with the same type, default, bounds and choices
    (`workspaceTrusted` is the exception: the extension sets it from workspace trust)."""
    import dataclasses
    import json
    from pathlib import Path

    from selftune.server.settings import Settings, camel

    package = json.loads((Path(__file__).parents[2] / "editor-clients" / "vscode" / "package.json").read_text())
    properties = package["contributes"]["configuration"]["properties"]
    client_only = {"selftune.serverPath", "selftune.languages", "selftune.trace.server"}
    expected = {}
    for f in dataclasses.fields(Settings):
        if f.name == "workspace_trusted":
            continue
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[type(f.default)]
        expected[f"selftune.{camel(f.name)}"] = (
            kind,
            f.default,
            f.metadata["lo"],
            f.metadata["hi"],
            list(f.metadata["choices"]) or None,
        )
    mirrored = {
        key: (p["type"], p["default"], p.get("minimum"), p.get("maximum"), p.get("enum"))
        for key, p in properties.items()
        if key not in client_only
    }
    assert mirrored == expected
    assert all(properties[key].get("markdownDescription") for key in properties)
