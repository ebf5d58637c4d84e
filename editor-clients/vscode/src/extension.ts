// The selftune extension: starts `selftune serve`, shows its suggestions as inline completions (ghost text),
// tells it what was accepted (whole, or word by word), keeps its settings in step with VS Code's, and shows
// what it is doing in the status bar.
import * as fs from "fs";
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  StaticFeature,
} from "vscode-languageclient/node";
import { PartialAcceptance } from "./partial";
import { Restarts } from "./restarts";
import { resolveServer } from "./serverPath";
import { serverKeys, serverSettings } from "./settings";
import { ClientState, describe, ServerStatus } from "./status";

const ACCEPT = "selftune.accept";
const STATUS_NOTIFICATION = "selftune/status";

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Asks the server for `selftune/status` notifications (see the server's status.py). */
class StatusCapability implements StaticFeature {
  getState() {
    return { kind: "static" as const };
  }
  fillClientCapabilities(capabilities: { experimental?: unknown }): void {
    const experimental = (capabilities.experimental ?? {}) as Record<string, unknown>;
    capabilities.experimental = { ...experimental, selftuneStatus: true };
  }
  initialize(): void {}
  clear(): void {}
}

class Selftune implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private clientState: ClientState = "starting";
  private failure = "";
  private status: ServerStatus | undefined;
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private readonly output = vscode.window.createOutputChannel("selftune", { log: true });
  private readonly partial = new PartialAcceptance();
  private accepting = 0; // accept-word/line commands in flight
  private readonly keys: string[];
  private readonly restarts = new Restarts(async (reading) => {
    await this.stop();
    this.failure = "";
    reading();
    await this.start();
  });

  constructor(private readonly context: vscode.ExtensionContext) {
    this.keys = serverKeys(context.extension.packageJSON.contributes.configuration.properties);
    this.item.command = "selftune.menu";
    this.render();
    this.item.show();
  }

  settings(): Record<string, unknown> {
    const config = vscode.workspace.getConfiguration("selftune");
    return serverSettings(this.keys, (key) => config.get(key), vscode.workspace.isTrusted);
  }

  private async start(): Promise<void> {
    const found = resolveServer({
      configured: vscode.workspace.getConfiguration("selftune").get<string>("serverPath", ""),
      folders: (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === "file").map((f) => f.uri.fsPath),
      trusted: vscode.workspace.isTrusted,
      pathEnv: process.env.PATH ?? "",
      platform: process.platform,
      isExecutable,
    });
    if ("error" in found) {
      this.fail(found.error);
      const choice = await vscode.window.showErrorMessage(`selftune: ${found.error}`, "Open Settings");
      if (choice) {
        vscode.commands.executeCommand("workbench.action.openSettings", "selftune.serverPath");
      }
      return;
    }
    this.output.info(`starting ${found.command} serve (from ${found.source})`);
    const serverOptions: ServerOptions = { command: found.command, args: found.args };
    const languages = vscode.workspace.getConfiguration("selftune").get<string[]>("languages", []);
    const clientOptions: LanguageClientOptions = {
      documentSelector: languages.map((language) => ({ scheme: "file", language })),
      outputChannel: this.output,
      initializationOptions: () => ({ selftune: this.settings() }),
      middleware: {
        workspace: {
          configuration: async (params, token, next) => {
            const answers = await next(params, token);
            if (!Array.isArray(answers)) {
              return answers;
            }
            return params.items.map((item, i) => (item.section === "selftune" ? this.settings() : answers[i]));
          },
        },
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!vscode.workspace.getConfiguration("selftune").get<boolean>("inlineCompletion", true)) {
            return null;
          }
          const result = await next(document, position, context, token);
          const items = Array.isArray(result) ? result : result?.items ?? [];
          for (const item of items) {
            if (item.command?.command === ACCEPT && typeof item.command.arguments?.[0] === "string") {
              const text = typeof item.insertText === "string" ? item.insertText : item.insertText.value;
              const at = document.offsetAt(item.range?.start ?? position);
              this.partial.offer(document.uri.toString(), item.command.arguments[0], at, text);
            }
          }
          return result;
        },
        // Where ghost text is on, the suggestion is not offered a second time in the suggest widget:
        // no textDocument/completion request is sent at all.
        provideCompletionItem: (document, position, context, token, next) => {
          const inline = vscode.workspace.getConfiguration("selftune").get<boolean>("inlineCompletion", true) &&
            vscode.workspace.getConfiguration("editor", document).get<boolean>("inlineSuggest.enabled", true);
          return inline ? [] : next(document, position, context, token);
        },
      },
    };
    const client = new LanguageClient("selftune", "selftune", serverOptions, clientOptions);
    client.registerFeature(new StatusCapability());
    client.onDidChangeState((e) => {
      if (this.client !== client) {
        return; // a client being stopped for a restart: its end is no failure to show
      }
      this.clientState = e.newState === State.Running ? "running" : e.newState === State.Starting ? "starting" : "stopped";
      this.render();
    });
    this.client = client;
    this.clientState = "starting";
    this.render();
    try {
      await client.start();
    } catch (error) {
      this.fail(String(error instanceof Error ? error.message : error));
      return;
    }
    client.onNotification(STATUS_NOTIFICATION, (status: ServerStatus) => {
      this.status = status;
      this.render();
    });
    this.status = (await this.execute("selftune.status", false)) as ServerStatus | undefined;
    this.render();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.status = undefined;
    if (client) {
      await client.stop().catch(() => undefined);
    }
  }

  /** (Re)start the server; requests while one runs are served one at a time (see restarts.ts). */
  restart(): Promise<void> {
    return this.restarts.request();
  }

  private fail(message: string): void {
    this.clientState = "failed";
    this.failure = message;
    this.output.error(message);
    this.render();
  }

  private render(): void {
    const view = describe(this.status, this.clientState, this.failure);
    this.item.text = view.text;
    this.item.tooltip = `${view.tooltip}\n\nClick for selftune's commands.`;
    this.item.backgroundColor = view.problem === "error"
      ? new vscode.ThemeColor("statusBarItem.errorBackground")
      : view.problem === "warning" ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  }

  /** Run a server command; errors are shown (when `show`) and give undefined. */
  async execute(command: string, show = true, args: unknown[] = []): Promise<unknown> {
    if (!this.client || this.clientState !== "running") {
      if (show) {
        vscode.window.showWarningMessage("selftune: the server is not running (see the selftune output)");
      }
      return undefined;
    }
    try {
      return await this.client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    } catch (error) {
      if (show) {
        vscode.window.showErrorMessage(String(error instanceof Error ? error.message : error));
      }
      return undefined;
    }
  }

  settingsChanged(event: vscode.ConfigurationChangeEvent): void {
    if (["selftune.serverPath", "selftune.languages"].some((key) => event.affectsConfiguration(key))) {
      this.restart();
    } else if (event.affectsConfiguration("selftune") && this.client && this.clientState === "running") {
      this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { selftune: this.settings() } });
    }
  }

  /**
   * Accept the next word or line of the suggestion through VS Code's own command, and report it. The
   * command edits the document before it returns, and the window sends that change to the extension host
   * before the command's result, on the same ordered channel: its change event fires while `accepting`
   * is set, and nothing typed after the command is taken for part of the acceptance.
   */
  async acceptPartially(builtin: string): Promise<void> {
    this.accepting += 1;
    try {
      await vscode.commands.executeCommand(builtin);
    } finally {
      this.accepting -= 1;
    }
  }

  documentChanged(event: vscode.TextDocumentChangeEvent): void {
    const uri = event.document.uri.toString();
    for (const change of event.contentChanges) {
      const accepted = this.partial.changed(uri,
        { offset: change.rangeOffset, removed: change.rangeLength, text: change.text }, this.accepting > 0);
      if (accepted) {
        this.execute(ACCEPT, false, [accepted.id, accepted.length]);
      }
    }
  }

  forget(document: vscode.TextDocument): void {
    this.partial.forget(document.uri.toString());
  }

  async toggle(key: "record" | "testFeedback"): Promise<void> {
    if (key === "testFeedback" && !vscode.workspace.isTrusted) {
      vscode.window.showWarningMessage(
        "selftune: tests on save run this workspace's code, so they stay off until you trust the workspace " +
        "(Workspaces: Manage Workspace Trust).");
      return;
    }
    const config = vscode.workspace.getConfiguration("selftune");
    const target = vscode.workspace.workspaceFolders
      ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    const now = !config.get<boolean>(key);
    await config.update(key, now, target);
    vscode.window.showInformationMessage(
      `selftune: ${key === "record" ? "recording" : "tests on save"} ${now ? "on" : "off"}`);
  }

  async showStats(): Promise<void> {
    const result = (await this.execute("selftune.stats")) as { folders: { text: string }[] } | undefined;
    if (result) {
      const content = result.folders.map((f) => f.text).join("\n\n");
      const document = await vscode.workspace.openTextDocument({ content, language: "plaintext" });
      await vscode.window.showTextDocument(document, { preview: true });
    }
  }

  async openReport(): Promise<void> {
    const result = (await this.execute("selftune.report")) as { reports: string[] } | undefined;
    if (result && result.reports.length) {
      await vscode.env.openExternal(vscode.Uri.file(result.reports[0]));
    }
  }

  async adapt(): Promise<void> {
    const result = await this.execute("selftune.adapt");
    if (result !== undefined) {
      vscode.window.showInformationMessage("selftune: adaptation started; the status bar shows its progress");
    }
  }

  /** Pick the adapter the server serves (or the base model alone), from the ones trained on this workspace. */
  async chooseAdapter(): Promise<void> {
    const result = (await this.execute("selftune.adapters")) as
      | { folders: { adapters: { id: string; current: boolean; usable: boolean }[]; text: string[] }[] }
      | undefined;
    if (!result) {
      return;
    }
    const folder = result.folders[0];
    const picks: (vscode.QuickPickItem & { id: string })[] = [
      { label: "base", description: "the model alone", id: "base" },
      ...(folder?.adapters ?? [])
        .map((a, i) => ({ label: a.id, description: a.current ? "in use" : "", detail: folder.text[i], id: a.id, usable: a.usable }))
        .filter((a) => a.usable)
        .reverse(),
    ];
    const pick = await vscode.window.showQuickPick(picks, { placeHolder: "The adapter to serve (newest first)" });
    if (pick) {
      const used = (await this.execute("selftune.useAdapter", true, [pick.id])) as { using: string | null } | undefined;
      if (used) {
        vscode.window.showInformationMessage(`selftune: serving ${used.using ?? "the base model alone"}`);
      }
    }
  }

  async menu(): Promise<void> {
    const picks: (vscode.QuickPickItem & { command: string })[] = [
      { label: "Adapt now", command: "selftune.adaptNow" },
      { label: "Choose the adapter in use", command: "selftune.chooseAdapter" },
      { label: "Show journal stats", command: "selftune.showStats" },
      { label: "Open the report", command: "selftune.openReport" },
      { label: "Toggle recording", command: "selftune.toggleRecording" },
      { label: "Toggle test feedback", command: "selftune.toggleTestFeedback" },
      { label: "Restart the server", command: "selftune.restartServer" },
      { label: "Show the server's log", command: "selftune.showOutput" },
    ];
    const pick = await vscode.window.showQuickPick(picks, { placeHolder: describe(this.status, this.clientState).tooltip.split("\n")[0] });
    if (pick) {
      vscode.commands.executeCommand(pick.command);
    }
  }

  showOutput(): void {
    this.output.show(true);
  }

  dispose(): void {
    this.stop();
    this.item.dispose();
    this.output.dispose();
  }
}

let selftune: Selftune | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const app = new Selftune(context);
  selftune = app;
  const command = (id: string, run: () => unknown) => vscode.commands.registerCommand(id, run);
  context.subscriptions.push(
    app,
    command("selftune.adaptNow", () => app.adapt()),
    command("selftune.chooseAdapter", () => app.chooseAdapter()),
    command("selftune.showStats", () => app.showStats()),
    command("selftune.toggleRecording", () => app.toggle("record")),
    command("selftune.toggleTestFeedback", () => app.toggle("testFeedback")),
    command("selftune.openReport", () => app.openReport()),
    command("selftune.restartServer", () => app.restart()),
    command("selftune.showOutput", () => app.showOutput()),
    command("selftune.menu", () => app.menu()),
    command("selftune.acceptNextWord", () => app.acceptPartially("editor.action.inlineSuggest.acceptNextWord")),
    command("selftune.acceptNextLine", () => app.acceptPartially("editor.action.inlineSuggest.acceptNextLine")),
    vscode.workspace.onDidChangeConfiguration((event) => app.settingsChanged(event)),
    vscode.workspace.onDidGrantWorkspaceTrust(() => app.restart()),
    vscode.workspace.onDidChangeTextDocument((event) => app.documentChanged(event)),
    vscode.workspace.onDidCloseTextDocument((document) => app.forget(document)),
  );
  await app.restart();
}

export async function deactivate(): Promise<void> {
  await selftune?.stop();
  selftune = undefined;
}
