// Finding the `selftune` executable. Pure: the file system is passed in.
import * as path from "path";

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where it was found, for the log and the status tooltip. */
  source: string;
}

export interface Where {
  /** The `selftune.serverPath` setting ("" when unset). */
  configured: string;
  /** Workspace folders, as file-system paths. */
  folders: string[];
  /** Whether the workspace is trusted: only then may its own .venv provide the server. */
  trusted: boolean;
  /** The PATH environment variable. */
  pathEnv: string;
  platform: string;
  isExecutable: (file: string) => boolean;
}

export function resolveServer(where: Where): ServerCommand | { error: string } {
  const windows = where.platform === "win32";
  const exe = windows ? "selftune.exe" : "selftune";
  const join = windows ? path.win32.join : path.posix.join;
  if (where.configured) {
    if (where.isExecutable(where.configured)) {
      return { command: where.configured, args: ["serve"], source: "the selftune.serverPath setting" };
    }
    return { error: `selftune.serverPath is ${where.configured}, which is not an executable file` };
  }
  if (where.trusted) {
    for (const folder of where.folders) {
      const candidate = join(folder, ".venv", windows ? "Scripts" : "bin", exe);
      if (where.isExecutable(candidate)) {
        return { command: candidate, args: ["serve"], source: `the workspace's virtual environment (${candidate})` };
      }
    }
  }
  for (const dir of where.pathEnv.split(windows ? ";" : ":")) {
    if (!dir) {
      continue;
    }
    const candidate = join(dir, exe);
    if (where.isExecutable(candidate)) {
      return { command: candidate, args: ["serve"], source: `PATH (${candidate})` };
    }
  }
  const venv = where.trusted ? "" : " (an untrusted workspace's own .venv is not used)";
  return {
    error:
      `the selftune server was not found on PATH${venv}: install selftune (see its README: ` +
      "make install, then .venv/bin/selftune) and set selftune.serverPath to that executable",
  };
}
