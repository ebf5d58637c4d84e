"""`selftune adapt`, `eval`, `adapters`, `trust` and `untrust`: the commands about adaptation, the adapters it
leaves, and whether a workspace may run its own code (cli.py has the rest).

`adapt` and `eval` import the training packages (the `adapt` extra) only when they run, so the server and the other
commands never do.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .settings import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, run, what in (
        ("adapt", _adapt, "train a LoRA adapter on this workspace and promote it if it wins"),
        ("eval", _eval, "held-out metrics of the base model and the current adapter"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("--workspace", default=".", help="the workspace folder (default: the current one)")
        p.add_argument(
            "--model", default=Settings.model, help="model manifest name or .toml path (default %(default)s)"
        )
        p.add_argument("--model-path", default="", help="GGUF file served instead of the manifest's weights")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a recipe knob (see adaptation/config.py), e.g. --set epochs=2",
        )
        p.add_argument("--json", action="store_true", help="progress and the result as JSON lines on stdout")
        if name == "adapt":
            p.add_argument(
                "--stop-after",
                type=float,
                default=0.0,
                metavar="MINUTES",
                help="the run will be stopped after this many minutes (the server passes adaptMaxMinutes): it "
                "plans for at most 90 %% of them, whatever its `minutes`, so that its verdict comes first",
            )
        p.add_argument(
            "--trusted",
            action="store_true",
            help="the editor trusts this workspace (the server passes it for a workspace the editor "
            "trusts); without it, only a workspace trusted with `selftune trust` runs its tests",
        )
        p.set_defaults(run=run)

    p = sub.add_parser("adapters", help="list the workspace's adapters; `use ID|base` or `export ID DIR`")
    p.add_argument("action", nargs="*", metavar="use ID | use base | export ID DIR",
                   help="nothing: list them; use: serve that adapter (or the base model alone) from now on, the "
                        "running server swaps it in; export: write its GGUF with an Ollama Modelfile and the "
                        "llama.cpp command lines into DIR")  # fmt: skip
    p.add_argument("--workspace", default=".", help="the workspace folder (default: the current one)")
    p.add_argument("--json", action="store_true", help="the list as JSON")
    p.set_defaults(run=_adapters)

    p = sub.add_parser("trust", help="allow a workspace to run its own code (tests on save, self-revision)")
    p.add_argument("workspace", nargs="?", default=".", metavar="DIR", help="the workspace folder (default: this one)")
    p.add_argument("--list", action="store_true", help="list the trusted folders instead")
    p.set_defaults(run=_trust)
    p = sub.add_parser("untrust", help="withdraw a workspace's trust")
    p.add_argument("workspace", nargs="?", default=".", metavar="DIR", help="the workspace folder (default: this one)")
    p.set_defaults(run=_untrust)


def _adapters(args: argparse.Namespace) -> int:
    import json

    from . import adapters
    from .models import ModelUnavailable, load_manifest, resolve_weights

    root = Path(args.workspace).resolve()
    action = args.action
    try:
        if not action:
            found = adapters.listed(root)
            if args.json:
                print(json.dumps(found, indent=2))
            else:
                print("\n".join(adapters.describe(a) for a in found) or f"no adapters in {root} yet")
            return 0
        if action[0] == "use" and len(action) == 2:
            using = adapters.use(root, action[1])
            print(f"{root}: serving {using or 'the base model alone'} (a running server swaps it in)")
            return 0
        if action[0] == "export" and len(action) == 3:
            meta = next((a for a in adapters.listed(root) if a["id"] == action[1]), {})
            base = resolve_weights(load_manifest(str(meta.get("base") or Settings.model)))
            for path in adapters.export(root, action[1], Path(action[2]), base):
                print(path)
            return 0
    except (ValueError, ModelUnavailable) as exc:
        raise SystemExit(f"selftune adapters: {exc}") from None
    raise SystemExit("selftune adapters: expected nothing, `use ID`, `use base` or `export ID DIR`")


def _trust(args: argparse.Namespace) -> int:
    from .trust import decide, grant, grants
    from .workspace import CONFIG_NAME, read_config

    if args.list:
        for folder, grant_ in sorted(grants().items()):
            state = "trusted" if decide(Path(folder), None).trusted else "config changed since: not trusted"
            print(f"{folder}  (granted {grant_.get('granted', '?')}; {state})")
        return 0
    root = Path(args.workspace).resolve()
    if not root.is_dir():
        raise SystemExit(f"selftune trust: {root} is not a folder")
    digest = grant(root)
    print(f"trusted {root}: selftune may run its code (tests on save where they are on, self-revision)")
    if digest is None:
        print(f"it has no {CONFIG_NAME}; creating or changing one withdraws the trust")
        return 0
    found = read_config(root)
    print(f"with {found.path} as it is now (sha256 {digest[:12]}); any change to it withdraws the trust:")
    for line in found.path.read_text(encoding="utf-8", errors="replace").splitlines():
        print(f"    {line}")
    return 0


def _untrust(args: argparse.Namespace) -> int:
    from .trust import revoke

    root = Path(args.workspace).resolve()
    print(f"{root}: " + ("trust withdrawn" if revoke(root) else "was not trusted"))
    return 0


def _adaptation(args: argparse.Namespace):
    try:
        from selftune.adaptation import run
        from selftune.adaptation.config import Config
        from selftune.adaptation.distributed import world
        from selftune.adaptation.progress import Reporter
    except ImportError as exc:
        raise SystemExit(
            f"selftune {args.command}: the training packages are missing ({exc.name}); "
            "install them with: pip install 'selftune[adapt]'"
        ) from None
    from .trust import decide

    root = Path(args.workspace).resolve()
    trust = decide(root, True if args.trusted else None)
    try:
        cfg, notes = Config().from_workspace(root, trusted=trust.trusted)
        cfg = cfg.override(args.set)
        if getattr(args, "stop_after", 0):
            from dataclasses import replace

            from selftune.adaptation.budget import within

            cfg = replace(cfg, minutes=within(cfg.minutes, args.stop_after))
    except ValueError as exc:
        raise SystemExit(f"selftune {args.command}: {exc}") from None
    for note in notes:
        print(f"selftune {args.command}: {note}", file=sys.stderr)
    main = world()[0] == 0  # under `accelerate launch` only the main process reports
    return run, cfg, trust, Reporter(json_lines=args.json and main, bar=main and (not args.json or sys.stderr.isatty()))


def _adapt(args: argparse.Namespace) -> int:
    run, cfg, trust, reporter = _adaptation(args)
    try:
        os.nice(10)  # training yields the machine to the editor and the completion server
    except OSError:
        pass
    try:
        meta = run.adapt(
            Path(args.workspace), model=args.model, model_path=args.model_path, cfg=cfg, reporter=reporter, trust=trust
        )
    except Exception as exc:
        if args.json:
            reporter.emit("error", message=str(exc))
        raise SystemExit(f"selftune adapt: {exc}") from None
    if "rank" in meta:  # another process of a distributed run: it trained, the main process reports
        return 0
    if not args.json:
        _print_trust(meta["trust"])
        compare = meta.get("compare", {})
        for name in ("base", "previous", "candidate"):
            if name in compare:
                m = compare[name]
                print(
                    f"{name:>9}: exact match {m.get('exact_match', 0):.1%}, edit similarity "
                    f"{m.get('edit_similarity', 0):.3f}"
                    + (f", pass@1 {m['pass_at_1']:.1%}" if "pass_at_1" in m else "")
                    + (f", held-out loss {m['heldout_loss']:.3f}" if m.get("heldout_loss") else "")
                    + (f" ({m['remembered']} answers remembered from the last run)" if m.get("remembered") else "")
                )
        t = meta["training"]
        print(f"training: {t['steps']} steps, {t['tokens']} tokens in {t['seconds']} s on {t['device']}")
        print(f"adapter {meta['id']}: {meta['decision']} ({meta['reason']})")
    return 0 if meta.get("decision") != "failed" else 1


def _print_trust(trust: dict) -> None:
    if trust.get("off"):
        print(f"project code: not run ({', '.join(trust['off'])} off): {trust['why']}; to allow it, {trust['how']}")


def _eval(args: argparse.Namespace) -> int:
    run, cfg, trust, reporter = _adaptation(args)
    try:
        report = run.evaluate_current(
            Path(args.workspace), model=args.model, model_path=args.model_path, cfg=cfg, reporter=reporter, trust=trust
        )
    except Exception as exc:
        raise SystemExit(f"selftune eval: {exc}") from None
    if args.json:
        reporter.emit("result", **report)
    else:
        _print_trust(report["trust"])
        for name in ("base", "current"):
            if name in report:
                m = report[name]
                print(
                    f"{name:>7}: {m.get('points', 0)} points, exact match {m.get('exact_match', 0):.1%}, "
                    f"edit similarity {m.get('edit_similarity', 0):.3f}"
                    + (f", pass@1 {m['pass_at_1']:.1%}" if "pass_at_1" in m else "")
                )
        print(report["written"])
    return 0
