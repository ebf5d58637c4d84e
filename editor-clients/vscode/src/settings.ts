// Which VS Code settings reach the server, and how workspace trust limits them.
// Pure: no `vscode` import, so that node's test runner can load it.

/** Settings under `selftune.` that only the extension reads; everything else is the server's. */
export const CLIENT_ONLY = new Set(["serverPath", "languages", "trace"]);

/** The server's setting names, from the extension's contributed configuration (package.json). */
export function serverKeys(properties: Record<string, unknown>): string[] {
  return Object.keys(properties)
    .filter((name) => name.startsWith("selftune."))
    .map((name) => name.slice("selftune.".length))
    .filter((key) => !CLIENT_ONLY.has(key.split(".")[0]));
}

/**
 * The settings object sent to the server (initializationOptions, workspace/configuration,
 * didChangeConfiguration). In an untrusted workspace the project's code must never run:
 * tests stay off whatever the settings say, and the server is told so (`workspaceTrusted`),
 * which also overrides `[tests] enabled` in the workspace's own .selftune/config.toml.
 */
export function serverSettings(keys: string[], get: (key: string) => unknown, trusted: boolean): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of keys) {
    const value = get(key);
    if (value !== undefined) {
      settings[key] = value;
    }
  }
  settings.workspaceTrusted = trusted;
  if (!trusted) {
    settings.testFeedback = false;
  }
  return settings;
}
