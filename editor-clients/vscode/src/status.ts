// The status bar item's text from the server's `selftune/status` and the client's own state. Pure.

export interface Progress {
  title: string;
  message: string;
  percentage: number | null;
}

/** What the server sends as `selftune/status` and answers to the command `selftune.status`. */
export interface ServerStatus {
  state: "idle" | "recording" | "testing" | "adapting";
  model: string | null;
  modelState: "none" | "loading" | "ready" | "error";
  modelError: string | null;
  adapter: string | null;
  recording: boolean;
  journals: string[];
  testFeedback: string[];
  trusted?: string[]; // workspace folders that may run their own code
  progress: Progress | null;
}

export type ClientState = "starting" | "running" | "stopped" | "failed";

export interface StatusView {
  text: string;
  tooltip: string;
  problem: "none" | "warning" | "error";
}

const ICONS: Record<string, string> = {
  idle: "$(circle-outline)",
  recording: "$(record)",
  testing: "$(beaker)",
  adapting: "$(loading~spin)",
};

function clip(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

export function describe(status: ServerStatus | undefined, client: ClientState, detail = ""): StatusView {
  if (client === "failed" || client === "stopped") {
    return {
      text: "$(error) selftune",
      tooltip: `selftune: the server ${client === "failed" ? "could not start" : "stopped"}${detail ? `: ${detail}` : ""}`,
      problem: "error",
    };
  }
  if (client === "starting" || status === undefined) {
    return { text: "$(loading~spin) selftune", tooltip: "selftune: starting the server", problem: "none" };
  }
  const model = status.model ?? "no model";
  const lines = [`selftune: ${status.state}`];
  let modelText = model;
  let problem: StatusView["problem"] = "none";
  if (status.modelState === "loading") {
    modelText = `${model} (loading)`;
    lines.push(`model ${model}: loading`);
  } else if (status.modelState === "error") {
    modelText = `${model} (failed)`;
    lines.push(`model ${model}: ${status.modelError ?? "failed to load"}`);
    problem = "error";
  } else {
    lines.push(`model ${model}`);
  }
  lines.push(`adapter: ${status.adapter ?? "none (the base model)"}`);
  lines.push(status.recording ? `recording in ${status.journals.join(", ")}` : "not recording");
  lines.push(status.testFeedback.length ? `tests on save in ${status.testFeedback.join(", ")}` : "tests on save: off");
  let state: string = status.state;
  const progress = status.progress;
  if (progress) {
    const detail = progress.message || progress.title;
    state += progress.percentage !== null && progress.percentage !== undefined
      ? ` ${progress.percentage}%` : ` ${clip(detail, 32)}`;
    lines.push(`${progress.title}${progress.message ? `: ${progress.message}` : ""}`);
  }
  const icon = status.modelState === "loading" || progress
    ? "$(loading~spin)" : ICONS[status.state] ?? "";
  return {
    text: `${icon} ${modelText} · ${status.adapter ?? "base"} · ${state}`,
    tooltip: lines.join("\n"),
    problem,
  };
}
