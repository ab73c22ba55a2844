"""The ``coopt`` command line: parse, call, print.  User errors exit 2 with one line."""
from __future__ import annotations

import argparse
import json
import sys

from coopt.errors import CooptError


def _cmd_evaluate(args) -> int:
    from coopt.backends import get_backend
    from coopt.inputs import load_inputs
    from coopt.report import evaluation_text

    inputs = load_inputs(args.files, ert=args.ert, art=args.art, variables=_parse_vars(args.var), sparse=True)
    if inputs.sparse is not None:
        from coopt.backends.sparse import evaluate_sparse_inputs
        result = evaluate_sparse_inputs(inputs, args.engine)
        print(json.dumps(result.to_dict(), indent=2))
        return 0 if result.valid else 1
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
    from coopt.mapper.options import MapperOptions
    if args.budget < 1:
        raise CooptError(f"--budget {args.budget}", key="--budget", expected="a positive number of evaluations")
    return MapperOptions(metric=_metric_arg(args.metric) or tuple(default_metric), budget=args.budget,
                         seed=args.seed, strategy=args.strategy)


def _cmd_map(args) -> int:
    from coopt.backends.single import file_metric, map_inputs, map_summary
    from coopt.inputs import load_inputs
    from coopt.model.mapping import mapping_to_yaml
    from coopt.report import evaluation_text

    inputs = load_inputs(args.files, ert=args.ert, art=args.art, variables=_parse_vars(args.var), sparse=True)
    opts = _options(args, file_metric(inputs) or ("edp",))
    if args.out:                         # refuse a bad --out before searching
        from coopt.outputs import output_dir
        output_dir(args.out, force=args.force)
    if inputs.sparse is not None:        # densities / sparse optimisations: one JSON object
        from coopt.backends.sparse import map_sparse_inputs
        r, se = map_sparse_inputs(inputs, opts, args.engine)
        if not r.found:
            print(json.dumps(map_summary(r, None)))
            return 1
        doc = mapping_to_yaml(r.mapping, inputs.arch, inputs.problem)
        out = {**se.to_dict(), "mapping": doc["mapping"], "metric": list(r.metric),
               "mappings_evaluated": r.stats.evaluated, "mappings_valid": r.stats.valid, "seconds": r.stats.seconds}
        text = json.dumps(out, indent=2)
        if args.out:
            from coopt.export.run_files import write_map_files
            write_map_files(args.out, doc, out, text, force=True)
        print(text)
        return 0 if se.valid else 1
    r = map_inputs(inputs, opts, args.engine, args.timeloop_bin)
    if not r.found:
        print(json.dumps(map_summary(r, None)) if args.json else f"{inputs.problem.name}: {r.reason}")
        return 1
    doc = mapping_to_yaml(r.mapping, inputs.arch, inputs.problem)
    out = map_summary(r, doc)
    text = evaluation_text(r.eval, inputs.problem, inputs.arch, inputs.tables.source)
    written = None
    if args.out:                         # export modules load only when asked for: process start counts
        from coopt.export.run_files import write_map_files
        written = write_map_files(args.out, doc, out, text, force=True)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(text)
        print(f"\nsearch: metric {'/'.join(r.metric)}, {r.stats.evaluated:,} mappings evaluated "
              f"({r.stats.pruned:,} pruned before evaluation) in {r.stats.seconds:.2f} s")
        if written:
            print(f"wrote {written} and stats")
    return 0


def _cmd_network(args) -> int:
    from coopt.backends.network import map_network
    from coopt.design import load_design
    from coopt.progress import LayerProgress
    from coopt.report import network_text
    from coopt.workload.networks import get_network

    from coopt.workload.user_network import parse_input_shapes
    net = get_network(args.network, batch=args.batch, input_shapes=parse_input_shapes(args.input_shape))
    design = load_design(args.arch, params=_parse_sets(args.set), dataflow=args.dataflow,
                         constraints=args.constraints, ert=args.ert, art=args.art,
                         variables=_parse_vars(args.var))
    opts = _options(args)
    from coopt.backends.sparse import network_sparse
    sparse = network_sparse(design, _network_densities(args.sparsity, net))
    if args.out:                         # refuse a bad --out before mapping
        from coopt.outputs import output_dir
        output_dir(args.out, force=args.force)
    with LayerProgress(len(net.layers), f"mapping {net.name} on {design.label}", enabled=not args.json) as bar:
        result = map_network(net, design.arch, design.tables, design.targets, opts, workers=args.workers,
                             engine=args.engine, timeloop_bin=args.timeloop_bin,
                             constraints_file=design.constraints_file, progress=bar.advance, sparse=sparse)
    if args.out:
        from coopt.export.run_files import write_network_files
        write_network_files(args.out, design, result, force=True, sparse=sparse)
    if args.json:
        from dataclasses import asdict
        extra = {"not_mapped": [asdict(n) for n in net.not_mapped]} if net.not_mapped else {}
        print(json.dumps({**result.to_dict(), **extra}, indent=2))
    else:
        print(network_text(result, design.label, net.not_mapped))
    return 0 if result.feasible else 1


def _network_densities(path, net) -> dict | None:
    """Each layer's densities: ``--sparsity FILE``'s, else those the network's problem files give.
    With both, the file replaces the problem files' densities entirely (one source, as a search
    space's ``sparsity:`` section does), and a line on stderr says so."""
    given = _sparsity_file(path, net)
    if given is not None and net.densities:
        from coopt.energy.notice import warn_once
        warn_once(f"--sparsity {path} replaces the densities in {net.source or net.name}'s problem files")
    return given if given is not None else net.densities


def _sparsity_file(path, net) -> dict | None:
    """``--sparsity FILE``: a YAML whose ``sparsity:`` has a search space's form -> each layer's densities."""
    if path is None:
        return None
    from coopt.study.sparsity import parse_sparsity
    from coopt.yamlio import load_yaml
    doc = load_yaml(path)
    if not isinstance(doc, dict) or "sparsity" not in doc:
        raise CooptError("no 'sparsity:' section", file=str(path), key="sparsity",
                         expected="sparsity: {densities: {Inputs: 0.5, Weights: 0.5}, layers: {...}}")
    return parse_sparsity(doc["sparsity"], net, file=str(path))


def _cmd_search(args) -> int:
    from coopt.study.runner import DEFAULT_SPACE, StudyConfig, run_study
    from coopt.study.space import load_space, space_path
    from coopt.numbers import fmt
    from coopt.progress import StudyBar

    if args.space is not None:
        args.space = str(space_path(args.space))         # a shipped space by name, or a file
        space = load_space(args.space)                   # validate before anything starts
    # no --space: a continued study's own (kept in its storage), else the default space
    if args.study is not None:
        name = args.study
    else:
        name = space.name if args.space is not None else load_space(DEFAULT_SPACE).name
    cfg = StudyConfig(space_path=args.space, study=name, trials=args.trials, workers=args.workers,
                      sampler=args.sampler, seed=args.seed, storage=args.storage, tracking_uri=args.tracking_uri,
                      ray_address=args.ray_address, screen_budget=args.screen_budget or None,
                      screen_slack=args.screen_slack, energy=args.energy, copy_to=args.copy_to)
    from coopt.study.storage import check_study_name
    check_study_name(name)                               # a bad --study exits 2 before anything starts

    def notice():
        if not args.resume:
            print(f"study '{name}' exists: continuing it (use a new --study name for a fresh one)", file=sys.stderr)

    from coopt.report import trial_line
    with StudyBar(args.trials, f"study {name}", enabled=not args.json, describe=trial_line) as bar:
        summary = run_study(cfg, on_progress=bar.update, on_continue=notice)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"study {name}: {summary['trials']} trials, {summary['feasible']} feasible, "
              f"Pareto front {len(summary['front'])} designs {summary['front']}, "
              f"hypervolume {fmt(summary['hypervolume'])}")
        if summary["screened"]:
            print(f"{summary['screened']} designs screened out at mapper budget {cfg.screen_budget} "
                  f"(they could not enter the front); the others were mapped at the space's full budget")
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
    from coopt.study.front import front_equivalents, front_hypervolume
    front = pareto_front(records, objectives)
    same = front_equivalents(records, objectives)
    if args.json:
        from coopt.study.records import design_key
        again = {r.number: sorted(o.number for o in records if o.number != r.number
                                  and design_key(o.params) == design_key(r.params)) for r in front}
        print(json.dumps([{"trial": r.number, "same_design": again[r.number],
                           "same_objectives": same.get(r.number, []), "params": r.params, "metrics": r.metrics}
                          for r in front], indent=2))
    else:
        hv = front_hypervolume(records, objectives, view.settings["reference_point"]) \
            if view.settings.get("reference_point") else None
        print(pareto_text(args.study, front, objectives, len(records), sum(r.feasible for r in records), same, hv))
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
        if args.all_equivalents:                     # the other designs with the same objectives, once each
            from coopt.study.front import first_of_each_design, front_equivalents
            firsts = {r.number for r in first_of_each_design(records)}
            numbers += sorted(n for others in front_equivalents(records, objectives).values() for n in others
                              if n in firsts)
        if not numbers:
            raise CooptError(f"study '{args.study}' has no feasible design yet", key="--pareto")
    else:
        numbers = args.trial
    with records_folder(view) as folder:
        paths = export_trials(folder, numbers, Path(args.out), force=args.force, study=args.study)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_compare(args) -> int:

    from coopt.report import compare_text
    from coopt.study.breakdown import component_breakdown

    view = load_study_view_positional(args.study, args)
    by_number = {r.number: r for r in view.records}
    missing = [n for n in args.trials if n not in by_number]
    if missing:
        raise CooptError(f"study '{args.study}' has no completed trial {missing[0]}", key="TRIAL",
                         expected=f"trial numbers of the study, e.g. {sorted(by_number)[:5]}")
    recs = [by_number[n] for n in dict.fromkeys(args.trials)]
    breakdowns = []
    for r in recs:
        try:
            breakdowns.append(component_breakdown(r))
        except Exception:                   # noqa: BLE001 - a record this code cannot re-read: no breakdown
            breakdowns.append(None)
    print(compare_text(args.study, recs, breakdowns), end="")
    if args.out:
        from coopt.outputs import output_dir, write_text
        from coopt.tracking.plots import compare_png
        out = output_dir(args.out, force=args.force)
        stem = "compare-" + "-".join(f"t{r.number:03d}" for r in recs)
        write_text(out / f"{stem}.txt", compare_text(args.study, recs, breakdowns))
        compare_png(recs, breakdowns, out / f"{stem}.png")
        print(f"wrote {out / (stem + '.txt')} and {out / (stem + '.png')}")
        from coopt.tracking.mlflow_tracker import log_comparison, resolve_uri, sqlite_path
        db = sqlite_path(resolve_uri(view.tracking_uri))
        if (db is None or db.is_file()) and log_comparison(view.tracking_uri, args.study, out / f"{stem}.png"):
            print(f"logged to the study run in MLflow as compare/{stem}.png")
    return 0


def load_study_view_positional(study: str, args):
    from coopt.study.results import load_study_view
    return load_study_view(study, storage=args.storage, tracking_uri=args.tracking_uri)


def _cmd_verify(args) -> int:
    from coopt.report import verify_text
    from coopt.verification import choose_trials, verify_study

    view = _study_view(args)
    numbers = choose_trials(args.trials, view.records, view.objectives, args.study)
    from coopt.tracking.mlflow_tracker import resolve_uri, sqlite_path
    db = sqlite_path(resolve_uri(view.tracking_uri))
    out = verify_study(args.study, view.settings, view.records, numbers, engine=args.engine,
                       timeloop_bin=args.timeloop_bin, mapper=not args.no_mapper, seed=args.seed,
                       tolerance=args.tolerance, tracking_uri=view.tracking_uri,
                       log=db is None or db.is_file())     # reading never creates an MLflow store
    if args.json:
        print(json.dumps([{"trial": c.number, "flagged": c.flagged, "logged": logged, **c.ratios,
                           "layers": [vars(layer) for layer in c.layers]} for c, logged in out], indent=2))
    else:
        print(verify_text(out, args.engine, args.tolerance))
    return 1 if any(c.flagged for c, _ in out) else 0


def _cmd_ui(args) -> int:
    """The tracking URI: --tracking-uri, else the study's settings record (in --storage or its folder)."""
    from coopt.tracking import launch_ui
    uri = args.tracking_uri
    if args.storage is not None and args.study is None:
        raise CooptError("--storage names where a study's settings are", key="--storage",
                         expected="--study NAME with it (or --tracking-uri alone)")
    if uri is None and args.study is not None:
        from coopt.study.results import load_study_settings
        from coopt.study.runner import study_dir
        if args.storage is not None or (study_dir(args.study) / "study.json").is_file():
            uri = load_study_settings(args.study, storage=args.storage).get("tracking_uri")
    return launch_ui(uri, port=args.port, study=args.study, front_port=args.front_port)


def _cmd_stop_ray(args) -> int:
    from coopt.study.cluster import stop_cluster
    print(f"stopped {stop_cluster(args.temp_dir)} Ray processes of the cluster in {args.temp_dir}")
    return 0


def _cmd_doctor(args) -> int:
    from coopt.study.doctor import run_doctor
    return run_doctor(args.study, args.storage, args.repair)


def _cmd_dashboard(args) -> int:
    from coopt.tracking.dashboard import launch_dashboard
    return launch_dashboard(args.study, storage=args.storage, port=args.port)


def _parse_vars(items) -> dict:
    """--var KEY=VALUE: a Jinja2 variable of a v4 top file (timeloopfe's --jinja_parse_data)."""
    out = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise CooptError(f"--var {item!r}", key="--var", expected="KEY=VALUE, e.g. --var architecture=eyeriss_like")
        if k.strip() in out:
            raise CooptError(f"--var {k.strip()} given twice", key="--var", expected="each variable once")
        out[k.strip()] = v.strip()
    return out


def _var_arg(p):
    p.add_argument("--var", action="append", metavar="KEY=VALUE",
                   help="a variable of a Jinja2 top file (timeloopfe v4 spec), e.g. architecture=eyeriss_like")


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
    from coopt.yamlio import dumps_yaml

    if args.list:
        for name in available_templates():
            print(f"{name}: {load_template(name).description.strip()}")
        return 0
    if not args.template:
        raise CooptError("name a template", expected=f"one of {available_templates()} or a path")
    from coopt.design import is_template
    if is_template(args.template):
        if args.var:
            raise CooptError("--var applies to Jinja2 spec files; templates take --set", key="--var")
        t = load_template(args.template)
        doc = t.instantiate_yaml(_parse_sets(args.set))
        if t.sparse_targets(_parse_sets(args.set)):      # a design option (zero gating) is part of the design
            doc["sparse_optimizations"] = {"targets": t.sparse_targets(_parse_sets(args.set))}
    else:                                # a Timeloop or v4 spec: the architecture Timeloop reads, processed
        from coopt.arch.v4_spec import load_spec
        raw, _ = load_spec([args.template], _parse_vars(args.var))
        doc = {k: raw[k] for k in ("architecture", "architecture_constraints", "sparse_optimizations") if k in raw}
    if args.out:
        from coopt.outputs import output_file, write_text
        write_text(output_file(args.out, force=args.force), dumps_yaml(doc))
        print(f"wrote {args.out}")
    else:
        print(dumps_yaml(doc), end="")
    return 0


def _int_range(lo: int, hi: int):
    """An argparse type: an integer from lo to hi (the error names the option, in one line)."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is out of range (expected {lo} to {hi})")
        return v
    parse.__name__ = "integer"
    return parse


_port = _int_range(1, 65535)
_workers = _int_range(1, 256)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``coopt CMD: error: ...``), exit 2, like every other user error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _energy_arg(p):
    p.add_argument("--energy", choices=["accelergy", "builtin"],
                   help="energy/area estimates: accelergy (default: Accelergy's compound classes with CACTI and "
                        "Library models, cached) or builtin (coopt's closed-form tables)")


def _tables_args(p):
    p.add_argument("--ert", help="Accelergy ERT.yaml: its energies replace coopt's estimates")
    p.add_argument("--art", help="Accelergy ART.yaml: its areas replace coopt's estimates")
    _energy_arg(p)


def _cmd_energy(args) -> int:
    from coopt.energy.accelergy import estimate_arch
    from coopt.energy.report import energy_json, energy_text, load_arch_and_components
    from coopt.energy.accelergy_files import write_energy_files

    arch, beside = load_arch_and_components(args.arch, _parse_vars(args.var))
    estimation = estimate_arch(arch, [*beside, *args.components], arch_file=args.arch)
    if args.out:
        write_energy_files(arch, estimation, args.out, force=args.force)
    print(json.dumps(energy_json(estimation), indent=2) if args.json else energy_text(estimation))
    return 0


def _engine_args(p):
    from coopt.backends import engine_help, engine_names
    p.add_argument("--engine", default="native", choices=engine_names(), help=engine_help())
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
    from coopt.mapper.options import STRATEGIES
    p.add_argument("--strategy", default="hybrid", choices=list(STRATEGIES),
                   help="; ".join(f"{k}: {v}" for k, v in STRATEGIES.items()))


def build_parser() -> argparse.ArgumentParser:
    from coopt.arch.template import available_templates
    from coopt.shipped import shipped_names
    from coopt.study.samplers import DEFAULT_SAMPLER, sampler_help, sampler_names
    from coopt.study.screening import DEFAULT_SLACK
    from coopt.workload.networks import network_names

    p = _Parser(prog="coopt", description="Hardware-mapping co-optimizer for DNN accelerators.")
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="evaluate one mapping like timeloop-model",
                        description="Evaluate a mapping of a layer on an architecture, like timeloop-model. "
                                    "The YAML files' top-level keys (architecture, problem, mapping, ...) are merged.")
    ev.add_argument("files", nargs="+", help="YAML files with architecture, problem and mapping")
    _tables_args(ev)
    _var_arg(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    _engine_args(ev)
    ev.set_defaults(func=_cmd_evaluate)

    mp_ = sub.add_parser("map", help="find the best mapping of one layer, like timeloop-mapper",
                         description="Search the mapspace of one layer on one architecture, like timeloop-mapper. "
                                     "Files are merged by top-level key; constraints in them are honoured and "
                                     "the mapper block's optimization_metrics is the default metric.")
    mp_.add_argument("files", nargs="+", help="YAML files with architecture, problem, constraints, mapper")
    _var_arg(mp_)
    _tables_args(mp_)
    _search_args(mp_)
    mp_.add_argument("--json", action="store_true", help="print one JSON object")
    mp_.add_argument("--out", help="write the best mapping (Timeloop YAML) and its stats to this folder")
    mp_.add_argument("--force", action="store_true", help="write into an existing, non-empty --out folder")
    _engine_args(mp_)
    mp_.set_defaults(func=_cmd_map)

    nw = sub.add_parser("network", help="map every layer of a network on one design",
                        description="Map all layers of a network (unique shapes once) on one design and print "
                                    "per-layer results and network totals.")
    nw.add_argument("--arch", default="eyeriss_like",
                    help=f"a template ({', '.join(available_templates())}; default eyeriss_like) "
                         "or a Timeloop architecture YAML, or a timeloopfe v4 spec (top.yaml.jinja2 with --var)")
    nw.add_argument("--set", action="append", metavar="NAME=VALUE",
                    help="template parameter, or a value of a v4 spec's variables:")
    nw.add_argument("--dataflow", help="template constraint option (default: the template's first)")
    nw.add_argument("--constraints", help="YAML with Timeloop constraint targets (for architecture files)")
    _var_arg(nw)
    nw.add_argument("--network", default="resnet50", metavar="NAME|PATH",
                    help=f"the workload: {', '.join(network_names())} (default resnet50), an ONNX model, or a "
                         "folder or YAML list of Timeloop problem files")
    nw.add_argument("--input-shape", action="append", metavar="NAME=1x3x224x224",
                    help="an ONNX model input's sizes (needed where the model's are dynamic)")
    nw.add_argument("--batch", type=int, default=1, help="batch size N (default 1)")
    nw.add_argument("--sparsity", metavar="YAML",
                    help="workload densities: a YAML with a search space's 'sparsity:' section (densities per "
                         "tensor, per-layer overrides); every layer is then mapped and costed with Sparseloop's "
                         "model, with the design's sparse optimisations (e.g. --set ifmap_zero_gating=true); "
                         "without it, the densities in the network's problem files (instance.densities) are "
                         "used, and with it they are replaced entirely")
    _tables_args(nw)
    _search_args(nw)
    nw.add_argument("--workers", type=_workers, default=2, help="parallel worker processes (default 2)")
    nw.add_argument("--json", action="store_true", help="print one JSON object")
    nw.add_argument("--out", help="write arch.yaml, per-layer mappings and summary.json to this folder")
    nw.add_argument("--force", action="store_true", help="write into an existing, non-empty --out folder")
    _engine_args(nw)
    nw.set_defaults(func=_cmd_network)

    se = sub.add_parser("search", help="run a co-optimization study (Optuna on Ray, tracked in MLflow)",
                        description="Search a design space: Optuna proposes designs, Ray actors map the network "
                                    "on each, MLflow keeps every trial and the Pareto front. All state lives "
                                    "under ./mlruns unless --tracking-uri/--storage say otherwise.")
    se.add_argument("--space",
                    help=f"a shipped search space by name ({', '.join(shipped_names('search_spaces'))}) or a "
                         "search-space YAML (default: a continued study's own, kept in its storage; else edge)")
    se.add_argument("--trials", type=_int_range(1, 100_000), default=50,
                    help="completed trials wanted in the study (default 50)")
    se.add_argument("--workers", type=_workers, default=2, help="Ray actors evaluating designs in parallel (default 2)")
    se.add_argument("--sampler", choices=sampler_names(),
                    help=f"default {DEFAULT_SAMPLER} for a new study; a continued study keeps its own. "
                         + sampler_help())
    se.add_argument("--study", help="study name (default: the space's name); an existing study is continued")
    se.add_argument("--seed", type=_int_range(0, 2**32 - 1),
                    help="random seed (default 0; a continued study keeps its own)")
    se.add_argument("--resume", action="store_true", help="continue an existing study (the default anyway)")
    _store_args(se, "use")
    se.add_argument("--ray-address", help="join an existing Ray cluster (default: start a local one)")
    se.add_argument("--copy-to", metavar="URL", help="copy the study from its own storage into this one and "
                                                     "continue it there (a --storage other than the study's "
                                                     "own is refused: it would split the study)")
    se.add_argument("--screen-budget", type=int, default=0, metavar="N",
                    help="multi-fidelity: map each design with N mappings per layer first and with the space's "
                         "full budget only if it could enter the front (0: off, the default)")
    se.add_argument("--screen-slack", type=float, default=DEFAULT_SLACK, metavar="F",
                    help="how much better (fraction, every objective) the full budget may make a screened "
                         f"design (default {DEFAULT_SLACK})")
    se.add_argument("--json", action="store_true", help="print a JSON summary")
    _energy_arg(se)
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
    which.add_argument("--pareto", action="store_true", help="every design on the Pareto front (one per set of "
                       "designs with identical objectives: the least area, then power)")
    ex.add_argument("--all-equivalents", action="store_true",
                    help="with --pareto, also the designs with the same objectives as a front entry")
    ex.add_argument("--out", required=True, help="folder to write into")
    ex.add_argument("--force", action="store_true", help="replace existing exports")
    _store_args(ex)
    ex.set_defaults(func=_cmd_export)

    co = sub.add_parser("compare", help="designs of a study side by side (terminal table; --out: a picture too)")
    co.add_argument("study", help="the study's name")
    co.add_argument("trials", type=int, nargs="+", metavar="TRIAL", help="trial numbers")
    co.add_argument("--out", help="folder for the table and a picture (bars per component and layer)")
    co.add_argument("--force", action="store_true", help="write into an existing non-empty folder")
    _store_args(co)
    co.set_defaults(func=_cmd_compare)

    ve = sub.add_parser("verify", help="re-evaluate a study's designs with a reference engine",
                        description="Re-evaluate chosen designs of a study with the real Timeloop (or AccelForge): "
                                    "the native best mappings through the reference model, and the reference "
                                    "mapper; print and log to each trial's MLflow run the ratios, flag "
                                    "differences above --tolerance.")
    ve.add_argument("--study", required=True)
    from coopt.backends import engine_names
    ve.add_argument("--engine", default="timeloop", choices=[e for e in engine_names() if e != "native"])
    ve.add_argument("--trials", default="pareto", help="'pareto' (default) or trial numbers N,M,...")
    ve.add_argument("--timeloop-bin", help="folder with timeloop-model / timeloop-mapper (default: PATH)")
    ve.add_argument("--no-mapper", action="store_true", help="only run the native mappings through the model")
    ve.add_argument("--tolerance", type=float, default=0.05, help="flag relative differences above this")
    ve.add_argument("--seed", type=int, default=0)
    _store_args(ve)
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=_cmd_verify)

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 over the study store")
    ui.add_argument("--port", type=_port, default=5000)
    ui.add_argument("--study", help="print only this study's URL (default: every study in the store); its "
                                    "settings record names the MLflow store")
    _store_args(ui)
    ui.add_argument("--front-port", type=_port, help="port of the front pages, whose points open the trial "
                                                     "runs (default: a free one)")
    ui.set_defaults(func=_cmd_ui)

    en = sub.add_parser("energy", help="estimate ERT/ART like Accelergy (compound classes, CACTI, Library)",
                        description="Reads an architecture (any form evaluate reads) and Accelergy compound "
                                    "component classes; prints or writes ERT.yaml, ART.yaml and a summary "
                                    "naming each primitive's estimator.")
    en.add_argument("arch", help="architecture YAML (Timeloop v0.3/v0.4, timeloopfe nodes form or v4 top file)")
    en.add_argument("components", nargs="*", help="Accelergy compound-component files (override shipped classes)")
    _var_arg(en)
    en.add_argument("--json", action="store_true", help='print {"ert": {component: {action: pJ}}, "art": {component: um2}}')
    en.add_argument("--out", help="write ERT.yaml, ART.yaml and energy_summary.yaml into this folder")
    en.add_argument("--force", action="store_true", help="write into an existing, non-empty --out folder")
    en.set_defaults(func=_cmd_energy)

    db = sub.add_parser("dashboard", help="Optuna Dashboard over a study (objective names, parameters in user units)",
                        description="Serve Optuna Dashboard on 127.0.0.1 over a read-only mirror of a study: "
                                    "named objectives, parameters in user units, refreshed as trials finish. "
                                    "Needs the optional extra: pip install 'coopt[dashboard]'.")
    db.add_argument("--study", required=True)
    db.add_argument("--port", type=_port, default=8080)
    db.add_argument("--storage", help="the study's Optuna storage, as for search (default: its journal file)")
    db.set_defaults(func=_cmd_dashboard)

    dr = sub.add_parser("doctor", help="check a study's folder and storage; --repair recovers what can be",
                        description="Name every damaged file of a study (trial records, study.json, the journal, "
                                    "run.lock, files an interrupted write left) and, with --repair, rebuild each "
                                    "from the other copy (the storage or the folder); damaged originals are kept "
                                    "as *.damaged-TIME, and a trial that cannot be recovered is named.")
    dr.add_argument("study")
    dr.add_argument("--storage", help="the study's Optuna storage (default: its settings record, else its journal)")
    dr.add_argument("--repair", action="store_true", help="rebuild what can be rebuilt")
    dr.set_defaults(func=_cmd_doctor)

    st = sub.add_parser("stop-ray", help="stop one Ray cluster of this host by its --temp-dir (not ray stop)",
                        description="Stop the Ray cluster started with `ray start ... --temp-dir TEMP_DIR` on this "
                                    "host: every process holding that folder (GCS server, raylet, workers, agents), "
                                    "SIGTERM then SIGKILL; other users' and other clusters' Ray processes are left "
                                    "alone (`ray stop` stops them all). The folder and its logs are kept.")
    st.add_argument("temp_dir", metavar="TEMP_DIR")
    st.set_defaults(func=_cmd_stop_ray)

    ar = sub.add_parser("arch", help="instantiate an architecture template as Timeloop YAML",
                        description="Write the Timeloop/Accelergy architecture of a template from arch_base/ "
                                    "with the given parameters, or the processed architecture and constraint "
                                    "targets of a Timeloop v4 spec (top.yaml.jinja2 --var architecture=NAME).")
    ar.add_argument("template", nargs="?", help=f"template name ({', '.join(available_templates())}), template "
                                                "file, or a Timeloop/v4 spec file")
    ar.add_argument("--set", action="append", metavar="NAME=VALUE", help="set a template parameter")
    _var_arg(ar)
    ar.add_argument("--out", help="write to this file instead of stdout")
    ar.add_argument("--force", action="store_true", help="replace an existing --out file")
    ar.add_argument("--list", action="store_true", help="list the templates")
    ar.set_defaults(func=_cmd_arch)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:          # --help, or a usage error already printed in one line
        return done.code if isinstance(done.code, int) else 2
    try:
        from coopt.energy.select import set_method
        from coopt.model.jit import check_env
        set_method(getattr(args, "energy", None))
        check_env()                     # a bad COOPT_JIT is refused before any work (and any Ray worker)
        return args.func(args)
    except CooptError as e:
        print(f"coopt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coopt: interrupted", file=sys.stderr)
        return 130
    except OSError as e:               # a full disk, a size limit, a read-only folder: one line, no traceback
        import errno
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            raise
        from coopt.outputs import os_reason
        where = f"{e.filename}: " if e.filename else ""
        print(f"coopt {args.command}: error: {where}{os_reason(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:          # output piped into head & co.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
