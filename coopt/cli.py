"""The ``coopt`` command line: parse, call, print.  User errors exit 2 with one line."""
from __future__ import annotations

import argparse
import json
import sys

from coopt.errors import CooptError


def _cmd_evaluate(args) -> int:
    from coopt.inputs import load_inputs
    from coopt.model.evaluate import evaluate
    from coopt.report import evaluation_text

    inputs = load_inputs(args.files, ert=args.ert, art=args.art)
    if args.engine == "native":
        result = evaluate(inputs.problem, inputs.arch, inputs.tables, inputs.mapping())
    else:
        from coopt.backends.base import get_backend
        backend = get_backend(args.engine, timeloop_bin=args.timeloop_bin)
        result = backend.evaluate(inputs.problem, inputs.arch, inputs.tables, inputs.mapping())
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(evaluation_text(result, inputs.problem, inputs.arch,
                              inputs.tables.source if args.engine == "native" else args.engine))
    return 0 if result.valid else 1


def _metric_arg(text):
    from coopt.mapper.search import parse_metric
    if text is None:
        return None
    return parse_metric([t for t in text.replace(",", " ").split() if t])


def _options(args, default_metric=("edp",)):
    from coopt.backends.base import MapperOptions
    if args.budget < 1:
        raise CooptError(f"--budget {args.budget}", key="--budget", expected="a positive number of evaluations")
    return MapperOptions(metric=_metric_arg(args.metric) or tuple(default_metric), budget=args.budget,
                         seed=args.seed, strategy=args.strategy)


def _cmd_map(args) -> int:
    from pathlib import Path
    from coopt.inputs import load_inputs
    from coopt.mapper.constraints import constraints_from_inputs
    from coopt.mapper.search import parse_metric
    from coopt.model.mapping import mapping_to_yaml
    from coopt.report import evaluation_text
    from coopt.yamlio import dump_yaml

    inputs = load_inputs(args.files, ert=args.ert, art=args.art)
    mapper_block = inputs.raw.get("mapper") or {}
    file_metric = mapper_block.get("optimization_metrics") or mapper_block.get("optimization_metric") or None
    opts = _options(args, parse_metric(file_metric) if file_metric else ("edp",))
    cons = constraints_from_inputs(inputs.raw, inputs.arch, inputs.problem, inputs.sources)
    from coopt.mapper.search import search
    if args.engine == "native":
        r = search(inputs.problem, inputs.arch, inputs.tables, cons, metric=opts.metric, budget=opts.budget,
                   seed=opts.seed, strategy=opts.strategy)
    else:
        r = _reference_map(args, inputs, cons, opts)
    if not r.found:
        if args.json:
            print(json.dumps({"found": False, "reason": r.reason, "mappings_evaluated": r.stats.evaluated,
                              "seconds": r.stats.seconds}))
        else:
            print(f"{inputs.problem.name}: {r.reason}")
        return 1
    doc = mapping_to_yaml(r.mapping, inputs.arch, inputs.problem)
    out = {**r.eval.to_dict(), "mapping": doc["mapping"], "metric": list(r.metric),
           "mappings_evaluated": r.stats.evaluated, "mappings_valid": r.stats.valid,
           "mappings_pruned": r.stats.pruned, "seconds": r.stats.seconds}
    if args.out:
        d = Path(args.out)
        d.mkdir(parents=True, exist_ok=True)
        dump_yaml(doc, d / "coopt-mapper.map.yaml")
        (d / "coopt-mapper.stats.json").write_text(json.dumps(out, indent=2))
        (d / "coopt-mapper.stats.txt").write_text(
            evaluation_text(r.eval, inputs.problem, inputs.arch, inputs.tables.source) + "\n")
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(evaluation_text(r.eval, inputs.problem, inputs.arch, inputs.tables.source))
        print(f"\nsearch: metric {'/'.join(r.metric)}, {r.stats.evaluated:,} mappings evaluated "
              f"({r.stats.pruned:,} pruned before evaluation) in {r.stats.seconds:.2f} s")
        if args.out:
            print(f"wrote {Path(args.out) / 'coopt-mapper.map.yaml'} and stats")
    return 0


def _reference_map(args, inputs, cons, opts):
    """timeloop-mapper / AccelForge for `coopt map --engine ...`, shaped like the native result."""
    from coopt.backends.base import get_backend
    from coopt.mapper.search import MapperResult, SearchStats
    from coopt.workload.networks import NetworkLayer

    backend = get_backend(args.engine, timeloop_bin=args.timeloop_bin)
    layer = NetworkLayer(inputs.problem.name, inputs.problem, 1, (inputs.problem.name,))
    lr = backend.map_layer(layer, inputs.arch, inputs.tables, cons, opts)
    stats = SearchStats(evaluated=lr.evaluated, valid=lr.valid, seconds=lr.seconds)
    return MapperResult(lr.mapping, lr.eval, opts.metric, stats, reason=lr.reason)


def _cmd_network(args) -> int:
    from pathlib import Path
    from coopt.design import load_design
    from coopt.mapper.network import map_network
    from coopt.progress import LayerProgress
    from coopt.report import network_text
    from coopt.workload.networks import get_network
    from coopt.yamlio import dump_yaml

    design = load_design(args.arch, params=_parse_sets(args.set), dataflow=args.dataflow,
                         constraints=args.constraints, ert=args.ert, art=args.art)
    net = get_network(args.network, batch=args.batch)
    opts = _options(args)
    with LayerProgress(len(net.layers), f"mapping {net.name} on {design.label}", enabled=not args.json) as bar:
        result = map_network(net, design.arch, design.tables, design.targets, opts, workers=args.workers,
                             engine=args.engine, timeloop_bin=args.timeloop_bin, progress=bar.advance)
    if args.out:
        d = Path(args.out)
        d.mkdir(parents=True, exist_ok=True)
        dump_yaml(design.arch_yaml, d / "arch.yaml")
        for layer in result.layers:
            if layer.found:
                from coopt.model.mapping import mapping_to_yaml
                dump_yaml(mapping_to_yaml(layer.mapping, design.arch, layer.problem),
                          d / f"{layer.name}.map.yaml")
        (d / "summary.json").write_text(json.dumps(result.to_dict(), indent=2))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(network_text(result, design.label))
    return 0 if result.feasible else 1


def _cmd_search(args) -> int:
    from coopt.study.runner import StudyConfig, run_study
    from coopt.study.space import load_space
    from coopt.progress import StudyBar

    if args.space is None:
        from coopt.arch.template import templates_dir
        args.space = str(templates_dir().parent / "search_spaces" / "edge.yaml")
    space = load_space(args.space)                       # validate before anything starts
    name = space.name if args.study is None else args.study
    cfg = StudyConfig(space_path=args.space, study=name, trials=args.trials, workers=args.workers,
                      sampler=args.sampler, seed=args.seed, storage=args.storage, tracking_uri=args.tracking_uri,
                      ray_address=args.ray_address)
    cfg.study_dir                                        # a bad --study exits 2 before anything starts

    def notice():
        if not args.resume:
            print(f"study '{name}' exists: continuing it (use a new --study name for a fresh one)", file=sys.stderr)

    with StudyBar(args.trials, f"study {name}", enabled=not args.json) as bar:
        summary = run_study(cfg, on_progress=bar.update, on_continue=notice)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"study {name}: {summary['trials']} trials, {summary['feasible']} feasible, "
              f"Pareto front {len(summary['front'])} designs {summary['front']}, "
              f"hypervolume {summary['hypervolume']:.6g}")
        if summary["recovered"]:
            print(f"re-ran the designs of trials {summary['recovered']} left unfinished by an earlier run")
        print(f"browse: coopt ui   |   front: coopt pareto --study {name}   |   "
              f"export: coopt export --study {name} --pareto --out DIR")
    return 0


def _study_view(args):
    """The study named by --study, read from --storage/--tracking-uri or its settings record."""
    from coopt.study.results import load_study_view
    return load_study_view(args.study, storage=args.storage, tracking_uri=args.tracking_uri)


def _cmd_pareto(args) -> int:
    from coopt.report import pareto_text
    from coopt.study.front import pareto_front

    view = _study_view(args)
    objectives, records = view.objectives, view.records
    front = pareto_front(records, objectives)
    if args.json:
        from coopt.study.front import distinct_designs
        print(json.dumps([{"trial": r.number, "same_design": again, "params": r.params, "metrics": r.metrics}
                          for r, again in distinct_designs(pareto_front(records, objectives, fold=False))],
                         indent=2))
    else:
        print(pareto_text(args.study, front, objectives, len(records), sum(r.feasible for r in records)))
    return 0


def _cmd_export(args) -> int:
    from pathlib import Path
    from coopt.export import export_trials
    from coopt.study.front import pareto_front
    from coopt.study.results import records_folder

    view = _study_view(args)
    objectives, records = view.objectives, view.records
    if args.pareto:
        from coopt.study.front import distinct_designs
        numbers = [r.number for r, _ in distinct_designs(pareto_front(records, objectives))]
        if not numbers:
            raise CooptError(f"study '{args.study}' has no feasible design yet", key="--pareto")
    else:
        numbers = args.trial
    with records_folder(view) as folder:
        paths = export_trials(folder, numbers, Path(args.out), force=args.force)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_verify(args) -> int:
    from coopt.backends.base import MapperOptions, get_backend
    from coopt.report import verify_text
    from coopt.study.front import distinct_designs, pareto_front
    from coopt.study.verify import verify_trial
    from coopt.tracking.mlflow_tracker import log_verification

    view = _study_view(args)
    objectives, records = view.objectives, view.records
    by_number = {r.number: r for r in records}
    if args.trials == "pareto":
        numbers = [r.number for r, _ in distinct_designs(pareto_front(records, objectives))]
    else:
        try:
            numbers = [int(x) for x in args.trials.split(",") if x.strip()]
        except ValueError:
            raise CooptError(f"--trials {args.trials!r}", key="--trials", expected="pareto or N,M,...") from None
    missing = [n for n in numbers if n not in by_number]
    if missing or not numbers:
        raise CooptError(f"trials {missing or numbers} not in study '{args.study}'", key="--trials",
                         expected=f"some of {sorted(by_number)}")
    backend = get_backend(args.engine, timeloop_bin=args.timeloop_bin)
    m = view.settings["mapper"]
    opts = MapperOptions(metric=tuple(m["metric"]), budget=m["budget"], seed=args.seed)
    from coopt.tracking.mlflow_tracker import resolve_uri, sqlite_path
    db = sqlite_path(resolve_uri(view.tracking_uri))
    store_exists = db is None or db.is_file()          # reading never creates an MLflow store
    flagged = 0
    out = []
    for n in numbers:
        check = verify_trial(by_number[n], backend, mapper=not args.no_mapper, options=opts,
                             tolerance=args.tolerance)
        flagged += check.flagged
        logged = store_exists and log_verification(view.tracking_uri, args.study, n, args.engine, check.ratios,
                                                   check.csv(), check.flagged)
        out.append((check, logged))
    if args.json:
        print(json.dumps([{"trial": c.number, "flagged": c.flagged, "logged": logged, **c.ratios,
                           "layers": [vars(l) for l in c.layers]} for c, logged in out], indent=2))
    else:
        print(verify_text(out, args.engine, args.tolerance))
    return 1 if flagged else 0


def _cmd_ui(args) -> int:
    from coopt.tracking import launch_ui
    return launch_ui(args.tracking_uri, port=args.port)


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise CooptError(f"--set {item!r}", expected="NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _cmd_arch(args) -> int:
    from coopt.arch.template import available_templates, load_template
    from coopt.yamlio import dump_yaml, dumps_yaml

    if args.list:
        for name in available_templates():
            print(f"{name}: {load_template(name).description.strip()}")
        return 0
    if not args.template:
        raise CooptError("name a template", expected=f"one of {available_templates()} or a path")
    template = load_template(args.template)
    doc = template.instantiate_yaml(_parse_sets(args.set))
    if args.out:
        dump_yaml(doc, args.out)
        print(f"wrote {args.out}")
    else:
        print(dumps_yaml(doc), end="")
    return 0


def _tables_args(p):
    p.add_argument("--ert", help="Accelergy ERT.yaml: its energies replace coopt's estimates")
    p.add_argument("--art", help="Accelergy ART.yaml: its areas replace coopt's estimates")


def _engine_args(p):
    p.add_argument("--engine", default="native", choices=["native", "timeloop", "accelforge"],
                   help="native (default), timeloop (the real binaries) or accelforge (optional extra)")
    p.add_argument("--timeloop-bin", help="folder with timeloop-model / timeloop-mapper (default: PATH)")


def _store_args(p, verb="read"):
    """--storage and --tracking-uri, the same for search, pareto, export, verify and ui."""
    p.add_argument("--storage", help=f"Optuna storage to {verb}: postgresql://, mysql://, sqlite:///FILE, "
                                     "grpc://HOST:PORT, journal:PATH (default: the study's settings record, "
                                     "else the journal file in ./mlruns/studies/NAME)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI, e.g. http://host:5000 (default: the study's "
                                          "settings record, else sqlite:///mlruns/mlflow.db)")


def _search_args(p):
    p.add_argument("--metric", help="edp (default), energy, delay, or a lexicographic list like delay,energy")
    p.add_argument("--budget", type=int, default=6000, help="model evaluations per layer (default 6000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--strategy", default="hybrid", choices=["hybrid", "random", "exhaustive"],
                   help="search strategy (default hybrid: sampling then local search)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coopt", description="Hardware-mapping co-optimizer for DNN accelerators.")
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="evaluate one mapping like timeloop-model",
                        description="Evaluate a mapping of a layer on an architecture, like timeloop-model. "
                                    "The YAML files' top-level keys (architecture, problem, mapping, ...) are merged.")
    ev.add_argument("files", nargs="+", help="YAML files with architecture, problem and mapping")
    _tables_args(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    _engine_args(ev)
    ev.set_defaults(func=_cmd_evaluate)

    mp_ = sub.add_parser("map", help="find the best mapping of one layer, like timeloop-mapper",
                         description="Search the mapspace of one layer on one architecture, like timeloop-mapper. "
                                     "Files are merged by top-level key; constraints in them are honoured and "
                                     "the mapper block's optimization_metrics is the default metric.")
    mp_.add_argument("files", nargs="+", help="YAML files with architecture, problem, constraints, mapper")
    _tables_args(mp_)
    _search_args(mp_)
    mp_.add_argument("--json", action="store_true", help="print one JSON object")
    mp_.add_argument("--out", help="write the best mapping (Timeloop YAML) and its stats to this folder")
    _engine_args(mp_)
    mp_.set_defaults(func=_cmd_map)

    nw = sub.add_parser("network", help="map every layer of a network on one design",
                        description="Map all layers of a network (unique shapes once) on one design and print "
                                    "per-layer results and network totals.")
    nw.add_argument("--arch", default="eyeriss_like",
                    help="template name from arch_base/ (default eyeriss_like) or a Timeloop architecture YAML")
    nw.add_argument("--set", action="append", metavar="NAME=VALUE", help="template parameter")
    nw.add_argument("--dataflow", help="template constraint option (default: the template's first)")
    nw.add_argument("--constraints", help="YAML with Timeloop constraint targets (for architecture files)")
    nw.add_argument("--network", default="resnet50", help="resnet50 (default), resnet18, mobilenet_v2")
    nw.add_argument("--batch", type=int, default=1, help="batch size N (default 1)")
    _tables_args(nw)
    _search_args(nw)
    nw.add_argument("--workers", type=int, default=2, help="parallel worker processes (default 2)")
    nw.add_argument("--json", action="store_true", help="print one JSON object")
    nw.add_argument("--out", help="write arch.yaml, per-layer mappings and summary.json to this folder")
    _engine_args(nw)
    nw.set_defaults(func=_cmd_network)

    se = sub.add_parser("search", help="run a co-optimization study (Optuna on Ray, tracked in MLflow)",
                        description="Search a design space: Optuna proposes designs, Ray actors map the network "
                                    "on each, MLflow keeps every trial and the Pareto front. All state lives "
                                    "under ./mlruns unless --tracking-uri/--storage say otherwise.")
    se.add_argument("--space", default=None,
                    help="search-space YAML (default: the shipped search_spaces/edge.yaml)")
    se.add_argument("--trials", type=int, default=50, help="completed trials wanted in the study (default 50)")
    se.add_argument("--workers", type=int, default=2, help="Ray actors evaluating designs in parallel (default 2)")
    se.add_argument("--sampler", default="nsga2", help="tpe, nsga2 (default), nsga3, gp, random, grid")
    se.add_argument("--study", help="study name (default: the space's name); an existing study is continued")
    se.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    se.add_argument("--resume", action="store_true", help="continue an existing study (the default anyway)")
    _store_args(se, "use")
    se.add_argument("--ray-address", help="join an existing Ray cluster (default: start a local one)")
    se.add_argument("--json", action="store_true", help="print a JSON summary")
    se.set_defaults(func=_cmd_search)

    pa = sub.add_parser("pareto", help="print a study's Pareto front")
    pa.add_argument("--study", required=True)
    pa.add_argument("--json", action="store_true")
    _store_args(pa)
    pa.set_defaults(func=_cmd_pareto)

    ex = sub.add_parser("export", help="write chosen designs as Timeloop/Accelergy inputs")
    ex.add_argument("--study", required=True)
    which = ex.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, nargs="+", help="trial numbers")
    which.add_argument("--pareto", action="store_true", help="every design on the Pareto front")
    ex.add_argument("--out", required=True, help="folder to write into")
    ex.add_argument("--force", action="store_true", help="replace existing exports")
    _store_args(ex)
    ex.set_defaults(func=_cmd_export)

    ve = sub.add_parser("verify", help="re-evaluate a study's designs with a reference engine",
                        description="Re-evaluate chosen designs of a study with the real Timeloop (or AccelForge): "
                                    "the native best mappings through the reference model, and the reference "
                                    "mapper; print and log to each trial's MLflow run the ratios, flag "
                                    "differences above --tolerance.")
    ve.add_argument("--study", required=True)
    ve.add_argument("--engine", default="timeloop", choices=["timeloop", "accelforge"])
    ve.add_argument("--trials", default="pareto", help="'pareto' (default) or trial numbers N,M,...")
    ve.add_argument("--timeloop-bin", help="folder with timeloop-model / timeloop-mapper (default: PATH)")
    ve.add_argument("--no-mapper", action="store_true", help="only run the native mappings through the model")
    ve.add_argument("--tolerance", type=float, default=0.05, help="flag relative differences above this")
    ve.add_argument("--seed", type=int, default=0)
    _store_args(ve)
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=_cmd_verify)

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 over the study store")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db)")
    ui.set_defaults(func=_cmd_ui)

    ar = sub.add_parser("arch", help="instantiate an architecture template as Timeloop YAML",
                        description="Write the Timeloop/Accelergy architecture of a template from arch_base/ "
                                    "with the given parameters.")
    ar.add_argument("template", nargs="?", help="template name (see --list) or path")
    ar.add_argument("--set", action="append", metavar="NAME=VALUE", help="set a template parameter")
    ar.add_argument("--out", help="write to this file instead of stdout")
    ar.add_argument("--list", action="store_true", help="list the templates")
    ar.set_defaults(func=_cmd_arch)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CooptError as e:
        print(f"coopt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coopt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:          # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
