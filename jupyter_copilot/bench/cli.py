"""`jupyter copilot bench humaneval|notebooks|grounding|…`: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

from .report import progress

HUMANEVAL_VARIANTS = ("product", "raw")
REPLAY_VARIANTS = ("product", "product-cell", "infill", "infill-cell")


def add_parser(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="completion quality and latency benchmarks",
        description="Benchmarks that go through the product's own completion path.",
    )
    kinds = bench.add_subparsers(dest="bench", metavar="BENCHMARK")
    bench.set_defaults(func=lambda args: bench.print_help() or 2)

    he = kinds.add_parser("humaneval", help="HumanEval infilling: pass@1, exact match, latency")
    he.add_argument("--file", default=None, help="a HumanEval infilling .jsonl(.gz) file "
                    "(default: the single-line file); a bare name is looked up in --data-dir")
    he.add_argument("--multi-line", action="store_true", help="the multi-line file (block mode)")
    he.add_argument("--limit", type=int, default=None, help="first N tasks after the shuffle")
    he.add_argument("--seed", type=int, default=0, help="shuffle seed; -1 keeps file order")
    he.add_argument("--raw", action="store_true",
                    help="the raw model with a plain FIM prompt (the reference) instead")
    he.add_argument("--variants", default=None,
                    help=f"comma-separated, from {','.join(HUMANEVAL_VARIANTS)} (default: product)")
    he.add_argument("--mode", choices=["auto", "line", "block"], default="auto",
                    help="completion mode asked of the product (auto: the server decides)")
    he.add_argument("--exec-timeout", type=float, default=10.0, help="seconds per program")
    _common(he)
    he.set_defaults(func=_humaneval)

    nb = kinds.add_parser("notebooks", help="replay a folder of notebooks, against llama-server")
    _replay_selection(nb)
    nb.add_argument("--variants", default="product,product-cell,infill,infill-cell",
                    help=f"comma-separated, from {','.join(REPLAY_VARIANTS)}")
    nb.add_argument("--no-typed", action="store_true",
                    help="skip the request after one more typed character")
    nb.add_argument("--no-prewarm", action="store_true", help="never call /copilot/warm")
    nb.add_argument("--infill-prewarm", action="store_true",
                    help="give llama-server an n_predict=0 warm-up at each cell change")
    nb.add_argument("--infill-typed-through", action="store_true",
                    help="emulate llama.vim's client-side reuse of a suggestion typed through")
    nb.add_argument("--ahead-gap-ms", type=float, default=None, metavar="MS",
                    help="reach line starts as after accepting the line above: the "
                    "product's ahead request, then the target's request MS later")
    nb.add_argument("--typing-warm", action="store_true",
                    help="before each request, the product's typing warm-up (up to the "
                    "word being typed), as the frontend sends it while the student types")
    nb.add_argument("--typing-ahead-gap-ms", type=float, default=None, metavar="MS",
                    help="before each request, the product's typing-ahead (a suggestion "
                    "asked ahead at the cell as typed a moment earlier), then the "
                    "target's request MS later")
    nb.add_argument("--entry-ahead", action="store_true",
                    help="at each cell the student settles in, the product's suggestion "
                    "asked ahead at the cursor (as the frontend asks it instead of the "
                    "warm-up when the editor has focus), waited for like a warm-up")
    nb.add_argument("--infill-url", default=None, help="an existing llama-server to use")
    nb.add_argument("--infill-ctx", type=int, default=8192, help="llama-server --ctx-size")
    _common(nb)
    nb.set_defaults(func=_notebooks)

    cp = kinds.add_parser("cache-plan", help="prompt tokens a replay makes the model evaluate, "
                          "by cache reuse rule (no model run; deterministic)")
    _replay_selection(cp)
    cp.add_argument("--reuse", default="0,16,32,64,128,256",
                    help="comma-separated cache_reuse_tokens values to compare")
    _common(cp)
    cp.set_defaults(func=_cache_plan)

    ec = kinds.add_parser("explain-cache", help="the first completion after an explanation: "
                          "does the explanation evict the notebook's cache?")
    _replay_selection(ec)
    ec.add_argument("--engine-code", default=None, metavar="DIR",
                    help="run the engine's child process from this checkout (a baseline)")
    ec.add_argument("--cell-lines", type=_line_range, default=None, metavar="N[-M]",
                    help="explain each notebook's deepest code cell of N lines or more "
                         "(N to M lines)")
    ec.add_argument("--kernel", action="store_true",
                    help="run the cells above in a real kernel; its names go with the requests")
    ec.add_argument("--explain-without-names", action="store_true",
                    help="with --kernel: the completions get the kernel's names, the "
                         "explanation not (as frontends sent before it carried them)")
    ec.add_argument("--questions-apart", action="store_true",
                    help="the follow-up question as a chat of its own with the earlier "
                         "cells, not after the notebook (what questions were before)")
    ec.add_argument("--prepared", action="store_true",
                    help="prepare the explanation ahead (as the frontend does when the "
                         "panel is open or a cell failed) before asking for it")
    ec.add_argument("--ask-after", type=float, default=None, metavar="SECONDS",
                    help="with --prepared: ask for the explanation this long after the "
                         "preparation started (before it is done)")
    ec.add_argument("--language", choices=["en", "fr"], default="en",
                    help="the explanation's and the questions' language (their prompts "
                         "differ in length)")
    _common(ec)
    ec.set_defaults(func=_explain_cache)

    bk = kinds.add_parser("busy-kernel", help="a completion while the notebook's kernel keeps "
                          "cores busy: the engine with every thread vs fit_threads")
    _replay_selection(bk)
    bk.add_argument("--busy-cores", type=int, default=1,
                    help="processes spinning a Python loop during the measured request")
    bk.add_argument("--fit", default="false,true",
                    help="fit_threads values to compare, one engine each (comma-separated)")
    _common(bk)
    bk.set_defaults(func=_busy_kernel)

    dc = kinds.add_parser("decode-cost", help="one forward pass by batch size, and what a "
                          "draft (speculative decoding) could save on this machine")
    _replay_selection(dc)
    dc.add_argument("--batches", default="1,2,3,4,5,6,8", help="batch sizes to time")
    dc.add_argument("--repeats", type=int, default=7, help="passes per batch size (median)")
    dc.add_argument("--draft-model", default=None,
                    help="a draft model (catalogue id or GGUF path): its single-token pass")
    _common(dc)
    dc.set_defaults(func=_decode_cost)

    mp = kinds.add_parser("most-probable-line", help="the greedy line against the most "
                          "probable line a beam search finds: is exact match the decoding's?")
    _replay_selection(mp)
    mp.add_argument("--widths", default="1,3",
                    help="beam widths, comma-separated; the first is the reference (1: greedy)")
    _common(mp)
    mp.set_defaults(func=_most_probable_line)

    ex = kinds.add_parser("executed", help="replay notebooks executed in a real kernel: "
                          "exact match without and with the kernel's live names",
                          description="Runs each notebook cell by cell in an IPython kernel "
                          "and asks for completions with and without the kernel summary.")
    ex.add_argument("folder", nargs="?", default=None,
                    help="folder of .ipynb files (default: notebooks/ in --data-dir)")
    ex.add_argument("--max-notebooks", type=int, default=None)
    ex.add_argument("--sample-notebooks", type=int, default=None, metavar="N")
    ex.add_argument("--seeds", default="0", help="comma-separated target seeds (e.g. 0,1,2)")
    ex.add_argument("--targets-per-notebook", type=int, default=6)
    ex.add_argument("--cell-timeout", type=float, default=20.0,
                    help="seconds before a cell is interrupted")
    ex.add_argument("--kernel", default="python3", help="kernel spec name")
    ex.add_argument("--key-targets", action="store_true",
                    help="also complete right after every [\" or [' whose key the code above "
                    "never spells (scored apart: key_targets)")
    _common(ex)
    ex.set_defaults(func=_executed)

    from .hub_load import add_load_parser

    add_load_parser(kinds)

    from .canary import add_canary_parser
    from .fuzz import add_fuzz_parser

    add_fuzz_parser(kinds)
    add_canary_parser(kinds)
    from .grounding import add_grounding_parser

    add_grounding_parser(kinds)
    from .compare import add_compare_parser

    add_compare_parser(kinds)

    plot = kinds.add_parser("plot", help="PNG figures from `notebooks --json` files",
                            description="Latency and quality figures of the first file; with "
                            "several runs of the same targets at other context budgets "
                            "(--set context_budget_tokens=N), quality by context size too.")
    plot.add_argument("json_file", nargs="+")
    plot.add_argument("--out", default="docs", help="folder for the PNG files")
    plot.add_argument("--name", default="replay", help="file name prefix")
    plot.set_defaults(func=_plot)


def _replay_selection(parser: argparse.ArgumentParser) -> None:
    """Which notebooks and targets a replay walks (see `_replay_notebooks`)."""
    parser.add_argument("folder", nargs="?", default=None,
                        help="folder of .ipynb files (default: notebooks/ in --data-dir)")
    parser.add_argument("--max-notebooks", type=int, default=None)
    parser.add_argument("--sample-notebooks", type=int, default=None, metavar="N",
                        help="a seeded random choice of N notebooks of the folder")
    parser.add_argument("--max-requests", type=int, default=None,
                        help="stop after this many targets per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half", choices=["dev", "held-out"], default=None,
                        help="one half of the folder (a fixed seeded split, data.split_halves): "
                             "tune on dev, report held-out")
    parser.add_argument("--sampler", choices=["pause", "third", "start"], default="pause",
                        help="cursor on a chosen line: pause (line start or a token boundary), "
                             "third (after the first third of the line's code) or start (its start)")
    parser.add_argument("--lines-per-cell", type=int, default=1)
    parser.add_argument("--targets-per-notebook", type=int, default=None,
                        help="a seeded sample of N targets per notebook, spread over it")
    parser.add_argument("--blocks", action="store_true", help="also block targets (a whole body)")
    parser.add_argument("--suffix", choices=["none", "cell"], default="none",
                        help="none: the student writes top to bottom; cell: lines below are kept")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="catalogue id or GGUF path (default: the default model)")
    parser.add_argument("--url", default=None,
                        help="a running Jupyter server with jupyter-copilot (else one is started "
                        "for the notebook replay; HumanEval runs the engine in-process)")
    parser.add_argument("--token", default=os.environ.get("JUPYTER_TOKEN", ""),
                        help="its token (default: $JUPYTER_TOKEN)")
    parser.add_argument("--data-dir", default=None,
                        help="benchmark data (default: $JUPYTER_COPILOT_BENCH_DATA or "
                        "../shared/bench next to the repository)")
    parser.add_argument("--set", action="append", default=[], metavar="TRAIT=VALUE",
                        help="a CopilotApp setting for the product, e.g. "
                        "context_budget_tokens=1024 (repeatable)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for every engine (default: all cores)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write results here")
    parser.add_argument("--quiet", action="store_true", help="no per-request progress")


def _overrides(args) -> dict:
    values = {}
    for item in args.set:
        name, sep, raw = item.partition("=")
        if not sep:
            from ..cli import CommandError

            raise CommandError(f"--set expects TRAIT=VALUE, got {item!r}")
        # JSON values (true, 32, "x"); Python's True/False too, which a JSON config
        # would otherwise pass on as the strings "True"/"False" (a Bool trait refuses
        # them and the server runs with the default).
        literal = {"True": True, "False": False, "None": None}
        try:
            values[name.strip()] = literal[raw] if raw in literal else json.loads(raw)
        except json.JSONDecodeError:
            values[name.strip()] = raw
    if args.threads:
        values["threads"] = args.threads
    return values


def _variants(text: str, allowed: tuple[str, ...]) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        from ..cli import CommandError

        raise CommandError(f"unknown variant(s) {unknown}; choose from {', '.join(allowed)}")
    return names


def _resolve_model(model: str | None):
    from ..models import DEFAULT_MODEL_ID
    from ..prompts import family
    from ..sources import resolve

    spec, path = resolve(model or DEFAULT_MODEL_ID)
    if not Path(path).is_file():
        from ..cli import CommandError

        raise CommandError(f"model file not found: {path} (jupyter copilot models pull {spec.id})")
    return spec, Path(path), family(spec.family)


def _header(kind: str, args, extra: dict) -> dict:
    from .report import machine, now

    return {"benchmark": kind, "date": now(), "machine": machine(), "argv": args.argv,
            "config": extra}


def _report(args, payload: dict, summary, results, lines: list[str]) -> int:
    """The end of every benchmark: the load seen after it, the numbers printed, and
    the whole payload written as JSON where ``--json`` asks."""
    from .report import write_json

    payload["machine"]["load_1min_after"] = round(os.getloadavg()[0], 2)
    payload.update(summary=summary, results=results)
    print("\n".join(lines))
    if args.json:
        write_json(args.json, payload)
        print(f"results: {args.json}")
    return 0


# --- humaneval -----------------------------------------------------------------------


def _humaneval(args) -> int:
    from .data import (
        MULTI_LINE_FILE,
        SINGLE_LINE_FILE,
        load_humaneval,
        resolve_data_file,
        sample_tasks,
    )

    variants = ["raw"] if args.raw else _variants(args.variants or "product", HUMANEVAL_VARIANTS)
    name = args.file or (MULTI_LINE_FILE if args.multi_line else SINGLE_LINE_FILE)
    path = resolve_data_file(name, args.data_dir)
    tasks = sample_tasks(load_humaneval(path), args.limit, None if args.seed < 0 else args.seed)
    multi = args.multi_line or "multi" in path.name.lower()
    mode = None if args.mode == "auto" else args.mode
    raw_mode = mode or ("block" if multi else "line")
    config = {"file": str(path), "tasks": len(tasks), "seed": args.seed, "mode": args.mode,
              "variants": variants, "model": args.model, "url": args.url,
              "overrides": _overrides(args)}
    payload = _header("humaneval", args, config)
    summaries, results = asyncio.run(_run_humaneval(args, tasks, variants, mode, raw_mode))
    from .report import humaneval_table

    return _report(args, payload, summaries, results,
                   [f"HumanEval {path.name}: {len(tasks)} tasks", humaneval_table(summaries)])


async def _run_humaneval(args, tasks, variants, mode, raw_mode):
    from .completers import (
        ENGINE_TRAITS,
        HttpCompleter,
        RawFimCompleter,
        ServiceCompleter,
        start_engine,
    )
    from .humaneval import run_humaneval, summarize

    overrides = _overrides(args)
    summaries, results = {}, {}
    async with AsyncExitStack() as stack:
        engine = fam = card = None
        if args.url is None or "raw" in variants:
            spec, model_path, fam = _resolve_model(args.model)
            card = spec.to_card(str(model_path))
            settings = {k: v for k, v in overrides.items() if k in ENGINE_TRAITS}
            engine = await start_engine(str(model_path), settings)
            stack.push_async_callback(engine.close)
        for variant in variants:
            if variant == "raw":
                completer = RawFimCompleter(engine, fam)
                variant_mode = raw_mode
            elif args.url:
                completer = HttpCompleter(args.url, args.token)
                stack.push_async_callback(completer.aclose)
                await completer.wait_ready()
                variant_mode = mode
            else:
                completer = ServiceCompleter(engine, fam, card, overrides)
                variant_mode = mode
            done = 0

            def show(result, variant=variant):
                nonlocal done
                done += 1
                if not args.quiet:
                    progress(f"[{variant} {done}/{len(tasks)}] {result['task_id']}: "
                             f"{result['status']}{' exact' if result['exact_match'] else ''} "
                             f"{result['latency_ms']:.0f} ms")

            rows = await run_humaneval(tasks, completer, mode=variant_mode,
                                       exec_timeout=args.exec_timeout, on_result=show)
            summaries[variant] = summarize(rows)
            results[variant] = rows
    return summaries, results


def _plot(args) -> int:
    from .plots import replay_latency_cdf, replay_quality_bars, replay_quality_by_context

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    first = args.json_file[0]
    paths = [replay_latency_cdf(first, out / f"{args.name}-latency.png"),
             replay_quality_bars(first, out / f"{args.name}-quality.png")]
    if len(args.json_file) > 1:
        paths.append(replay_quality_by_context(args.json_file, out / f"{args.name}-context.png"))
    for path in paths:
        print(path)
    return 0


# --- notebooks -----------------------------------------------------------------------


def _notebooks(args) -> int:
    variants = _variants(args.variants, REPLAY_VARIANTS)
    folder, notebooks = _replay_notebooks(args)
    n_targets = sum(len(t) for _, _, t in notebooks)
    config = {"folder": str(folder), "notebooks": len(notebooks), "targets": n_targets,
              "variants": variants, "seed": args.seed, "lines_per_cell": args.lines_per_cell,
              "targets_per_notebook": args.targets_per_notebook,
              "sample_notebooks": args.sample_notebooks,
              "half": args.half, "sampler": args.sampler,
              "notebook_names": [name for name, _, _ in notebooks],
              "blocks": args.blocks, "suffix": args.suffix, "typed": not args.no_typed,
              "prewarm": not args.no_prewarm, "infill_prewarm": args.infill_prewarm,
              "infill_typed_through": args.infill_typed_through,
              "ahead_gap_ms": args.ahead_gap_ms, "typing_warm": args.typing_warm,
              "typing_ahead_gap_ms": args.typing_ahead_gap_ms,
              "entry_ahead": args.entry_ahead,
              "infill_ctx": args.infill_ctx, "model": args.model, "url": args.url,
              "overrides": _overrides(args)}
    payload = _header("notebooks", args, config)
    progress(f"{len(notebooks)} notebooks, {n_targets} targets, variants {', '.join(variants)}")
    summaries, results = _run_replay(args, notebooks, variants)
    from .report import replay_ratios, replay_table

    lines = [f"Notebook replay of {folder}: {len(notebooks)} notebooks, {n_targets} targets",
             replay_table(summaries)]  # fmt: skip
    ratios = replay_ratios(summaries)
    if ratios:
        lines += ["\nproduct / llama-server /infill (same targets, same context):", ratios]
    lines += [_line_starts_below(name, summary) for name, summary in summaries.items()
              if summary["latency"]["line_start_below"]["n"]]  # fmt: skip
    return _report(args, payload, summaries, results, lines)


def _line_starts_below(name: str, summary: dict) -> str:
    """The line starts under a line of their cell (what `--ahead-gap-ms` changes)."""
    below, ahead = summary["latency"]["line_start_below"], summary["asked_ahead"]
    text = (f"{name}: line starts under a line of their cell: {below['n']}, "
            f"p50 {below['p50_ms']} ms, p95 {below['p95_ms']} ms")
    if ahead["n"]:
        text += (f"; asked ahead {ahead['n']}, served by the ahead answer {ahead['reused']}, "
                 f"exact {ahead['exact_match']}, ahead request p50 {ahead['ahead_ms']['p50_ms']} ms")
    return text


def _replay_notebooks(args):
    """(folder, [(name, cells, targets)]): the notebooks and targets of a replay."""
    from .data import default_data_dir, load_notebook, notebook_paths
    from .replay import relative
    from .targets import notebook_targets

    folder = Path(args.folder or Path(args.data_dir or default_data_dir()) / "notebooks")
    paths = notebook_paths(folder, args.max_notebooks, args.sample_notebooks, args.seed,
                           half=getattr(args, "half", None))
    if not paths:
        from ..cli import CommandError

        raise CommandError(f"no .ipynb files under {folder}")
    notebooks = []
    budget = args.max_requests
    for path in paths:
        if budget is not None and budget <= 0:
            break
        name = relative(path, folder)
        cells = load_notebook(path)
        targets = notebook_targets(name, cells, seed=args.seed, lines_per_cell=args.lines_per_cell,
                                   blocks=args.blocks, suffix_policy=args.suffix,
                                   per_notebook=args.targets_per_notebook,
                                   sampler=getattr(args, "sampler", "pause"))
        if budget is not None:
            targets = targets[:budget]
            budget -= len(targets)
        if targets:
            notebooks.append((name, cells, targets))
    return folder, notebooks


def _cache_plan(args) -> int:
    from .cache_plan import evaluated_tokens, prompts_of_replay, summarize, table
    from .completers import app_defaults
    from .report import write_json

    folder, notebooks = _replay_notebooks(args)
    _, model_path, fam = _resolve_model(args.model)
    settings = {**app_defaults(), **_overrides(args)}
    settings.setdefault("context_budget_tokens", 1536)
    settings.setdefault("suffix_max_chars", 400)
    from llama_cpp import Llama  # the vocabulary only: no weights, no KV cache

    vocab = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
    prompts = prompts_of_replay(notebooks, settings, fam)
    tokens = [vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)
              for _, _, text in prompts]
    firsts = {i for i, (_, first, _) in enumerate(prompts) if first}
    results = {}
    for min_tokens in (int(v) for v in args.reuse.split(",")):
        rows = evaluated_tokens(tokens, min_tokens)
        results[str(min_tokens)] = {"first": summarize(rows, lambda i: i in firsts),
                                    "all": summarize(rows, lambda i: True)}
    print(f"Cache plan of {folder}: {len(notebooks)} notebooks, {len(prompts)} requests")
    print("\nfirst request in a cell:")
    print(table({k: v["first"] for k, v in results.items()}))
    print("\nall requests (first and later, no typed):")
    print(table({k: v["all"] for k, v in results.items()}))
    if args.json:
        payload = _header("cache-plan", args, {"folder": str(folder), "seed": args.seed,
                                               "notebooks": [n for n, _, _ in notebooks],
                                               "overrides": _overrides(args)})
        payload["summary"] = results
        write_json(args.json, payload)
        print(f"results: {args.json}")
    return 0


def _at_deepest_targets(args, model_path: str, settings: dict, notebooks, measure,
                        describe) -> list[dict]:  # fmt: skip
    """One engine (the product's child, `settings`); `measure(engine, notebook, cells,
    target)` at the deepest target of each notebook (one with cells above it): the
    rows of all, in order, each described on the way unless --quiet."""
    from .completers import start_engine

    async def run() -> list[dict]:
        engine = await start_engine(model_path, settings)
        rows = []
        try:
            for name, cells, targets in notebooks:
                deep = [t for t in targets if t.cell_index > 0]
                if deep:
                    new = await measure(engine, name, cells, deep[-1])
                    rows += new
                    if not args.quiet:
                        progress(f"{name}: " + ", ".join(describe(r) for r in new))
        finally:
            await engine.close()
        return rows

    return asyncio.run(run())


def _busy_kernel(args) -> int:
    from .busy_kernel import alone_rate, measure_target, summarize, table
    from .completers import app_defaults

    folder, notebooks = _replay_notebooks(args)
    _, model_path, fam = _resolve_model(args.model)
    values = [value.strip().lower() in ("1", "true", "on", "yes") for value in args.fit.split(",")]
    reference = alone_rate(args.busy_cores)
    progress(f"{args.busy_cores} busy core(s) alone: {reference:.0f} thousand turns/s")

    results, summaries = {}, {}
    for fit in values:
        label = f"fit_threads={str(fit).lower()}"
        settings = {**app_defaults(), **_overrides(args), "fit_threads": fit}
        results[label] = _at_deepest_targets(
            args, str(model_path), settings, notebooks,
            lambda engine, name, cells, target, settings=settings: measure_target(
                engine, fam, settings, name, cells, target, args.busy_cores, reference),
            lambda r: f"{r['phase']} {r['ms']:.0f} ms ({r['threads']} threads)",
        )  # fmt: skip
        summaries[label] = summarize(results[label])
    payload = _header("busy-kernel", args, {"folder": str(folder), "seed": args.seed,
                                            "busy_cores": args.busy_cores,
                                            "alone_rate": round(reference, 1),
                                            "overrides": _overrides(args)})  # fmt: skip
    lines = [(f"A completion beside {args.busy_cores} busy core(s), {folder}: "
              f"{len(notebooks)} notebooks"), table(summaries)]
    return _report(args, payload, summaries, results, lines)


def _decode_cost(args) -> int:
    from .cache_plan import product_prompt
    from .completers import app_defaults
    from .decode_cost import measure, table

    folder, notebooks = _replay_notebooks(args)
    _, model_path, fam = _resolve_model(args.model)
    settings = {**app_defaults(), **_overrides(args)}
    name, cells, target = next((name, cells, [t for t in targets if t.cell_index > 0][-1])
                               for name, cells, targets in notebooks
                               if any(t.cell_index > 0 for t in targets))  # fmt: skip
    draft_path = _resolve_model(args.draft_model)[1] if args.draft_model else None
    summary = measure(product_prompt(target, cells, settings, fam).text, str(model_path),
                      draft_path and str(draft_path), args.threads or 0,
                      [int(b) for b in args.batches.split(",")], args.repeats)  # fmt: skip
    payload = _header("decode-cost", args, {"folder": str(folder), "notebook": name,
                                            "model": str(model_path),
                                            "draft_model": args.draft_model})  # fmt: skip
    return _report(args, payload, summary, [], [f"{name}:", table(summary)])


def _most_probable_line(args) -> int:
    from .completers import app_defaults
    from .decode_cost import load_backend
    from .most_probable import compare, summarize, table

    folder, notebooks = _replay_notebooks(args)
    _, model_path, fam = _resolve_model(args.model)
    settings = {**app_defaults(), **_overrides(args)}
    widths = [int(w) for w in args.widths.split(",")]
    backend = load_backend(str(model_path), args.threads or 0)
    rows = compare(notebooks, settings, fam, backend, widths, quiet=args.quiet)
    summary = summarize(rows, widths)
    payload = _header("most-probable-line", args, {"folder": str(folder),
                                                   "model": str(model_path), "widths": widths,
                                                   "overrides": _overrides(args)})  # fmt: skip
    lines = [f"The most probable line, {folder}: {len(notebooks)} notebooks", table(summary, widths)]
    return _report(args, payload, summary, rows, lines)


def _line_range(text: str) -> tuple[int, int | None]:
    """"N" or "N-M" (1 <= N <= M): a cell's length in lines, for --cell-lines."""
    low, dash, high = text.partition("-")
    try:
        bounds = int(low), (int(high) if dash else None)
    except ValueError:
        bounds = (0, None)
    if bounds[0] < 1 or (bounds[1] is not None and bounds[1] < bounds[0]):
        raise argparse.ArgumentTypeError(f"expected N or N-M lines (1 <= N <= M), not {text!r}")
    return bounds


def _kernel_names(path: Path, cells, cell_index: int) -> list:
    """The kernel's names once the code cells above `cell_index` have run in a fresh
    kernel beside the notebook's data files (as the frontend would have sent them)."""
    from ..schema import NamespaceEntry
    from .executed import NotebookKernel

    with NotebookKernel(data_dir=path.parent) as kernel:
        kernel.run_cells(cells, 0, cell_index)
        return [NamespaceEntry(**entry) for entry in kernel.namespace()]


def _explain_cache(args) -> int:
    from .completers import app_defaults
    from .explain_cache import long_cell_target, measure_cell, summarize, table
    from .report import write_json

    folder, notebooks = _replay_notebooks(args)
    _, model_path, fam = _resolve_model(args.model)
    settings = {**app_defaults(), **_overrides(args)}
    if args.engine_code:
        # The child runs `python -m` in our working directory, which comes first on
        # its path, then PYTHONPATH: both must point at the other checkout.
        code = str(Path(args.engine_code).resolve())
        os.environ["PYTHONPATH"] = code
        os.chdir(code)

    if args.cell_lines:
        low, high = args.cell_lines
        notebooks = [(name, cells, [target]) for name, cells, _ in notebooks
                     if (target := long_cell_target(name, cells, low, high))]  # fmt: skip

    async def measure(engine, name, cells, target):
        names = _kernel_names(folder / name, cells, target.cell_index) if args.kernel else []
        return await measure_cell(engine, fam, settings, name, cells, target, names,
                                  explain_names=not args.explain_without_names,
                                  questions_apart=args.questions_apart,
                                  prepared=args.prepared or args.ask_after is not None,
                                  ask_after=args.ask_after, language=args.language)  # fmt: skip

    rows = _at_deepest_targets(
        args, str(model_path), settings, notebooks, measure,
        lambda r: f"{r['phase']} {r['ms']:.0f} ms ({r['cached_tokens']} cached)",
    )  # fmt: skip
    summary = summarize(rows)
    print(f"Explanation vs completion cache, {folder}: {len(notebooks)} notebooks")
    print(table(summary))
    if args.json:
        payload = _header("explain-cache", args, {"folder": str(folder), "seed": args.seed,
                                                  "engine_code": args.engine_code,
                                                  "cell_lines": args.cell_lines,
                                                  "kernel": args.kernel,
                                                  "explain_names": not args.explain_without_names,
                                                  "questions_apart": args.questions_apart,
                                                  "prepared": args.prepared,
                                                  "ask_after": args.ask_after,
                                                  "language": args.language,
                                                  "overrides": _overrides(args)})
        payload["machine"]["load_1min_after"] = round(os.getloadavg()[0], 2)
        payload.update(summary=summary, results=rows)
        write_json(args.json, payload)
        print(f"results: {args.json}")
    return 0


def _run_replay(args, notebooks, variants):
    """Ours first, then the anchor: never two models computing at once on the CPU."""
    summaries, results = {}, {}
    ours = [v for v in variants if v.startswith("product")]
    anchors = [v for v in variants if v.startswith("infill")]
    if ours:
        with _product_server(args) as (url, token):
            for variant in ours:
                summaries[variant], results[variant] = asyncio.run(
                    _replay_http(args, notebooks, variant, url, token)
                )
    if anchors:
        with _anchor_server(args) as url:
            for variant in anchors:
                summaries[variant], results[variant] = asyncio.run(
                    _replay_infill(args, notebooks, variant, url)
                )
    return summaries, results


@contextmanager
def _product_server(args):
    if args.url:
        yield args.url, args.token
        return
    from .jupyter_server import jupyter_server

    _, model_path, _ = _resolve_model(args.model)
    copilot = {"model": str(model_path), **_overrides(args)}
    with jupyter_server(copilot) as server:
        progress(f"jupyter server at {server.url} (log {server.log_path})")
        yield server.url, server.token


@contextmanager
def _anchor_server(args):
    if args.infill_url:
        yield args.infill_url
        return
    from .llama_server import start_llama_server

    _, model_path, _ = _resolve_model(args.model)
    threads = args.threads or os.cpu_count() or 1
    # One slot: the replay is one student; its whole context is that slot's cache.
    extra = ("--threads-batch", str(threads), "--cache-reuse", "256", "--temp", "0")
    with start_llama_server(model_path, parallel=1, ctx=args.infill_ctx, extra_args=extra,
                            threads=threads) as server:
        progress(f"llama-server at {server.url}")
        yield server.url


async def _replay_http(args, notebooks, variant, url, token):
    from .completers import HttpCompleter
    from .replay import Variant

    completer = HttpCompleter(url, token)
    try:
        await completer.wait_ready()
        return await _replay(args, notebooks, Variant(variant, completer,
                             with_context=variant == "product", prewarm=not args.no_prewarm,
                             typing_warm=getattr(args, "typing_warm", False),
                             typing_ahead_gap_ms=getattr(args, "typing_ahead_gap_ms", None),
                             entry_ahead=getattr(args, "entry_ahead", False)))
    finally:
        await completer.aclose()


async def _replay_infill(args, notebooks, variant, url):
    from .completers import InfillCompleter, app_defaults
    from .replay import Variant

    defaults = {**app_defaults(), **_overrides(args)}
    completer = InfillCompleter(url, defaults["line_max_tokens"], defaults["block_max_tokens"],
                                prewarm=args.infill_prewarm,
                                typed_through=args.infill_typed_through)
    try:
        return await _replay(args, notebooks, Variant(variant, completer,
                             with_context=variant == "infill", prewarm=args.infill_prewarm))
    finally:
        await completer.aclose()


async def _replay(args, notebooks, variant):
    from .replay import replay_notebook, summarize

    rows = []
    total = sum(len(t) for _, _, t in notebooks)
    count = 0

    def show(result):
        nonlocal count
        if result["phase"] != "typed":
            count += 1
        if not args.quiet:
            warm = f" (warm-up {result['warm_ms']:.0f} ms)" if result.get("warm_ms") else ""
            quality = "exact" if result["exact_match"] else f"sim {result['edit_similarity']:.2f}"
            progress(f"[{variant.name} {count}/{total}] {result['notebook']} "
                     f"cell {result['cell_index']} {result['phase']}: {quality} "
                     f"{result['latency_ms']:.0f} ms{warm}")

    for name, cells, targets in notebooks:
        rows += await replay_notebook(name, cells, targets, variant, typed=not args.no_typed,
                                      ahead_gap_ms=getattr(args, "ahead_gap_ms", None),
                                      on_result=show)
    return summarize(rows), rows


# --- executed replay -----------------------------------------------------------------


def _executed(args) -> int:
    from .data import default_data_dir, load_notebook, notebook_paths
    from .executed import ExecutedNotebook, cell_outcomes
    from .replay import relative
    from .targets import notebook_targets

    folder = Path(args.folder or Path(args.data_dir or default_data_dir()) / "notebooks")
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    paths = notebook_paths(folder, args.max_notebooks, args.sample_notebooks, seeds[0])
    if not paths:
        from ..cli import CommandError

        raise CommandError(f"no .ipynb files under {folder}")
    notebooks = []
    for path in paths:
        cells = load_notebook(path)
        name = relative(path, folder)
        targets = sorted(
            {t for seed in seeds for t in notebook_targets(
                name, cells, seed=seed, per_notebook=args.targets_per_notebook)},
            key=lambda t: (t.cell_index, t.line_index, t.column),
        )
        if targets or args.key_targets:
            notebooks.append(ExecutedNotebook(name, cells, targets, folder=path.parent))
    n_targets = sum(len(nb.targets) for nb in notebooks)
    config = {"folder": str(folder), "notebooks": len(notebooks), "targets": n_targets,
              "seeds": seeds, "targets_per_notebook": args.targets_per_notebook,
              "cell_timeout": args.cell_timeout, "kernel": args.kernel, "model": args.model,
              "key_targets": args.key_targets,
              "overrides": _overrides(args),
              "notebook_names": [nb.name for nb in notebooks]}
    payload = _header("executed", args, config)
    progress(f"{len(notebooks)} notebooks, {n_targets} targets, each without and with "
             "the kernel's names")
    summary, rows = asyncio.run(_run_executed(args, notebooks))
    summary["cells"] = cell_outcomes(notebooks)
    from .report import executed_table

    return _report(args, payload, summary, rows,
                   [f"Executed replay of {folder}: {len(notebooks)} notebooks, {n_targets} targets",
                    executed_table(summary)])  # fmt: skip


async def _run_executed(args, notebooks):
    from .completers import ENGINE_TRAITS, ServiceCompleter, start_engine
    from .executed import NotebookKernel, replay_executed, summarize

    overrides = _overrides(args)
    spec, model_path, fam = _resolve_model(args.model)
    settings = {k: v for k, v in overrides.items() if k in ENGINE_TRAITS}
    engine = await start_engine(str(model_path), settings)
    rows: list[dict] = []
    try:
        completer = ServiceCompleter(engine, fam, spec.to_card(str(model_path)), overrides)

        def show(row):
            if not args.quiet:
                names = f" runtime {row['runtime_names']}" if row["runtime_names"] else ""
                progress(f"[{row['variant']} {row['sampler']}] {row['notebook']} "
                         f"cell {row['cell_index']}: "
                         f"{'exact' if row['exact_match'] else 'miss'}{names}")

        for notebook in notebooks:
            rows += await replay_executed(
                notebook, completer,
                lambda folder: NotebookKernel(args.cell_timeout, args.kernel, folder),
                key_targets=args.key_targets, on_result=show,
            )
    finally:
        await engine.close()
    return summarize(rows), rows
