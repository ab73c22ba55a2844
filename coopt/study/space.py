"""Search-space files: what may vary, under which budgets, towards which objectives.

Validated completely before anything starts; every error names the file and
the key.  A file names an architecture template (``arch_base/``) or a
timeloopfe v4 spec (``spec:``, :mod:`coopt.arch.spec_template`), its
varying parameters with their domains (int with step or log scale, powers of
two, floats, categorical lists), parameters held fixed, the workload, the
mapper settings, the objectives, the device budgets and the reference point
of the hypervolume.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from coopt.arch.spec_template import SpecTemplate, bundle_spec
from coopt.arch.template import Template, load_template
from coopt.mapper.options import MapperOptions
from coopt.errors import SpecError
from coopt.mapper.search import parse_metric
from coopt.shipped import shipped_file, shipped_names
from coopt.study.records import BUDGET_METRICS, METRIC_NAMES
from coopt.workload.networks import Network, get_network, network_names
from coopt.yamlio import load_yaml

TOP_KEYS = ("name", "description", "template", "spec", "vars", "dataflow", "workload", "parameters", "fixed", "mapper",
            "objectives", "budgets", "reference_point", "sampler_options", "sparsity")
PARAM_TYPES = ("int", "float", "pow2", "categorical")
DIRECTIONS = ("minimize", "maximize")
DEFAULT_OBJECTIVES = [("energy_uj", "minimize"), ("throughput_ips", "maximize")]
MAX_DOMAIN = 1_000_000          # values one parameter may list (a grid or a template check enumerates them)
MAX_GRID = 10_000_000           # design points the grid sampler may enumerate
MAX_MAPPER_BUDGET = 10_000_000  # mappings per layer per design: beyond, one trial takes days
MAX_SEED = 2**32 - 1            # numpy's and Optuna's seeds
MAX_BATCH = 1_000_000
SCALARS = (str, int, float, bool, type(None))


@dataclass
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False
    choices: list | None = None

    def count(self) -> int | None:
        """How many values a finite domain has, computed without listing them (None for floats)."""
        if self.type == "categorical":
            return len(self.choices)
        if self.type == "pow2":
            return int(math.log2(self.high)) - int(math.log2(self.low)) + 1
        if self.type == "int":
            return (int(self.high) - int(self.low)) // (1 if self.log else self.step or 1) + 1
        return None

    def values(self) -> list | None:
        """Every value of a finite domain (None for continuous floats)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "pow2":
            e0, e1 = int(math.log2(self.low)), int(math.log2(self.high))
            return [2 ** e for e in range(e0, e1 + 1)]
        if self.type == "int":
            if self.log:
                return list(range(int(self.low), int(self.high) + 1))
            return list(range(int(self.low), int(self.high) + 1, self.step or 1))
        return None

    def suggest(self, trial):
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "pow2":
            e = trial.suggest_int(f"log2_{self.name}", int(math.log2(self.low)), int(math.log2(self.high)))
            return 2 ** e
        if self.type == "int":
            if self.log:
                return trial.suggest_int(self.name, int(self.low), int(self.high), log=True)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step or 1)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def optuna_name(self) -> str:
        return f"log2_{self.name}" if self.type == "pow2" else self.name

    def to_optuna_value(self, value):
        return int(round(math.log2(value))) if self.type == "pow2" else value


@dataclass
class SearchSpace:
    name: str
    description: str
    template: Template | SpecTemplate      # a built-in template, or a user's v4 spec carried as data
    dataflow: str | None
    network: Network
    params: list[Param]
    fixed: dict
    mapper: MapperOptions
    objectives: list[tuple[str, str]]
    budgets: dict[str, float]
    reference: list[float]
    sampler_options: dict = field(default_factory=dict)
    path: str | None = None
    raw: dict = field(default_factory=dict)
    sparsity: dict | None = None      # layer name -> Timeloop densities (coopt.study.sparsity, else the
                                      # network's problem files); None: dense

    def suggest(self, trial) -> dict:
        return {p.name: p.suggest(trial) for p in self.params}

    def template_params(self, params: dict) -> dict:
        return {**self.fixed, **params}

    def size(self) -> int | None:
        """Number of design points (None when a float parameter makes it infinite)."""
        n = 1
        for p in self.params:
            count = p.count()
            if count is None:
                return None
            n *= count
        return n

    def grid(self) -> dict:
        """Optuna GridSampler search space: parameter name -> list of values."""
        size = self.size()
        if size is not None and size > MAX_GRID:
            raise SpecError(f"the grid has {size:,} design points", file=self.path, key="parameters",
                            expected=f"at most {MAX_GRID:,} for the grid sampler (coarser steps), or another sampler")
        out = {}
        for p in self.params:
            vals = p.values()
            if vals is None:
                raise SpecError(f"parameter {p.name} is continuous", file=self.path, key=f"parameters.{p.name}",
                                expected="finite domains for the grid sampler")
            out[p.optuna_name()] = [p.to_optuna_value(v) for v in vals]
        return out

    def from_optuna(self, optuna_params: dict) -> dict:
        """Design parameters from an Optuna trial's params (undoing the pow2 exponent)."""
        out = {}
        for p in self.params:
            v = optuna_params[p.optuna_name()]
            out[p.name] = 2 ** v if p.type == "pow2" else v
        return out

    def to_optuna(self, params: dict) -> dict:
        return {p.optuna_name(): p.to_optuna_value(params[p.name]) for p in self.params}


def _num(v, *, file, key, what="a number"):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise SpecError(f"is {v!r}", file=file, key=key, expected=f"{what} (finite)")
    return v


def _name(v, *, file, key, what):
    """A name where YAML could give anything (a list, a number): one line naming the key."""
    if not isinstance(v, str) or not v:
        raise SpecError(f"is {v!r}", file=file, key=key, expected=what)
    return v


def _param(name: str, node, template: Template | SpecTemplate, *, file) -> Param:
    key = f"parameters.{name}"
    if name not in template.parameters and isinstance(template, SpecTemplate):
        e = template.unknown(name)
        raise SpecError(e.message, file=file, key=key, expected=e.expected)
    if name not in template.parameters:
        raise SpecError(f"unknown parameter '{name}' for template {template.name}", file=file, key=key,
                        expected=f"one of {sorted(template.parameters)}")
    return _accepted(_domain(name, node, file=file), template, file=file)


def _domain(name: str, node, *, file) -> Param:
    """One parameter's type and domain, checked on its own."""
    key = f"parameters.{name}"
    if not isinstance(node, dict):
        raise SpecError("must be a mapping", file=file, key=key, expected="{type: int|float|pow2|categorical, ...}")
    unknown = set(node) - {"type", "low", "high", "step", "log", "choices"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", file=file, key=key,
                        expected="type, low, high, step, log, choices")
    ptype = node.get("type")
    if ptype not in PARAM_TYPES:
        raise SpecError(f"type is {ptype!r}", file=file, key=f"{key}.type", expected=f"one of {list(PARAM_TYPES)}")
    if ptype == "categorical":
        choices = node.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpecError("has no choices", file=file, key=f"{key}.choices", expected="a non-empty list")
        bad = [c for c in choices if not isinstance(c, SCALARS) or (isinstance(c, float) and not math.isfinite(c))]
        if bad:
            raise SpecError(f"choice {bad[0]!r} is not a plain value", file=file, key=f"{key}.choices",
                            expected="numbers, strings or booleans (no lists, mappings, NaN or inf)")
        if len(choices) > MAX_DOMAIN:
            raise SpecError(f"{len(choices):,} choices", file=file, key=f"{key}.choices",
                            expected=f"at most {MAX_DOMAIN:,}")
        p = Param(name, ptype, choices=list(choices))
    else:
        low = _num(node.get("low"), file=file, key=f"{key}.low")
        high = _num(node.get("high"), file=file, key=f"{key}.high")
        if low > high:
            raise SpecError(f"empty domain: low {low} > high {high}", file=file, key=key, expected="low <= high")
        step = node.get("step")
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
            raise SpecError(f"step is {step!r}", file=file, key=f"{key}.step", expected="a positive integer")
        log = node.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"log is {log!r}", file=file, key=f"{key}.log",
                            expected="true or false (unquoted: \"false\" is a string)")
        if log and low <= 0:
            raise SpecError("a log scale needs low > 0", file=file, key=f"{key}.low", expected="a positive number")
        if ptype == "pow2":
            e0, e1 = math.ceil(math.log2(low)) if low > 0 else 0, math.floor(math.log2(high)) if high > 0 else -1
            if low <= 0 or e0 > e1:
                raise SpecError(f"empty domain: no power of two in [{low}, {high}]", file=file, key=key,
                                expected="low and high bracketing at least one power of two")
            low, high = 2 ** e0, 2 ** e1
        if ptype == "int" and (int(low) != low or int(high) != high):
            raise SpecError("int bounds must be integers", file=file, key=key, expected="integer low/high")
        p = Param(name, ptype, low=low, high=high, step=step, log=log)
    return p


def _accepted(p: Param, template, *, file) -> Param:
    """``p`` when every value of its domain is acceptable to the template (the ends only, for a
    domain too long to list)."""
    name, key = p.name, f"parameters.{p.name}"
    spec = template.parameters[name]
    count = p.count()
    probe = p.values() if count is not None and count <= MAX_DOMAIN else [p.low, p.high]
    for v in probe:
        try:
            spec.check(v)
        except SpecError as e:
            raise SpecError(f"value {v!r} is not accepted by template {template.name}: {e.message}", file=file,
                            key=key, expected=e.expected) from None
    return p


def _template(raw: dict, file, probes=()) -> Template | SpecTemplate:
    """``template:`` (a built-in template) or ``spec:`` (a v4 spec, paths relative to the space file, with
    ``vars:`` for its Jinja2 variables), exactly one."""
    if "spec" in raw:
        if "template" in raw:
            raise SpecError("both 'template' and 'spec' given", file=file, key="spec",
                            expected="a built-in template or a v4 spec, not both")
        if raw.get("dataflow") is not None:
            raise SpecError("a v4 spec's dataflow is its inline constraints", file=file, key="dataflow",
                            expected="no dataflow: with spec:")
        spec, jinja = raw["spec"], raw.get("vars") or {}
        items = spec if isinstance(spec, list) else [spec]
        if not items or not all(isinstance(x, str) and x for x in items):
            raise SpecError(f"is {spec!r}", file=file, key="spec",
                            expected="a v4 top file or architecture file (or a list of files), relative to this file")
        if not isinstance(jinja, dict) or not all(isinstance(v, (str, int, float, bool)) for v in jinja.values()):
            raise SpecError("must map Jinja2 variables to values", file=file, key="vars",
                            expected="{architecture: simba_like, ...}")
        base = Path(file).parent if file else Path.cwd()
        return bundle_spec([base / x for x in items], {str(k): v for k, v in jinja.items()}, file=file, key="spec",
                           probes=probes)
    if "vars" in raw:
        raise SpecError("vars: sets a v4 spec's Jinja2 variables", file=file, key="vars", expected="spec: with vars:")
    if "template" not in raw:
        raise SpecError("missing", file=file, key="template",
                        expected="an architecture template name, e.g. eyeriss_like (or spec: a v4 spec file)")
    _name(raw["template"], file=file, key="template", what="a template name or path, e.g. eyeriss_like")
    try:
        return load_template(raw["template"])
    except SpecError as e:
        raise SpecError(e.message, file=file, key="template", expected=e.expected) from None


def _jinja_probes(raw: dict, file) -> list[dict]:
    """The Jinja2 values a spec-backed space will set (``fixed:`` ones, and each value of a small searched
    domain, else its ends): a Jinja2 variable may include other files, and the spec sent to workers must
    hold what every value reads.  Names that are no Jinja2 variable are left out by the reader."""
    if "spec" not in raw or not isinstance(raw.get("parameters"), dict):
        return []
    fixed = raw.get("fixed") if isinstance(raw.get("fixed"), dict) else {}
    probes = []
    for name, node in raw["parameters"].items():
        p = _domain(str(name), node, file=file)
        vals = p.values() or [p.low, p.high]
        probes += [{**fixed, p.name: v} for v in (vals if len(vals) <= 16 else [vals[0], vals[-1]])]
    return probes or ([fixed] if fixed else [])


def _probe_spec(template: SpecTemplate, fixed: dict, params: list[Param], network: Network, *, file):
    """The spec reads and estimates at the lowest and at the highest value of every parameter (a value its
    expressions or the estimators refuse is found now, not in a worker), and its constraints hold every
    layer kind of the network; returns its ``mapper:`` block's optimization metrics (None without)."""
    from coopt.design import design_from_spec

    metric = None
    for end in (0, -1):
        values = {**fixed, **{p.name: (p.values() or [p.low, p.high])[end] for p in params}}
        try:
            design = design_from_spec(template, values)   # read, flattened and estimated, as a trial will
            if end == 0:
                _check_network_fits(network, design.arch, design.targets, design.constraints_file, file=file)
                block = template.load(values)[0].get("mapper")
                metric = (block.get("optimization_metrics") or block.get("optimization_metric")
                          if isinstance(block, dict) else None)
        except SpecError as e:             # the values come from the space: name it, and where the spec fails
            where = ": ".join(str(x) for x in (e.file, e.key) if x)
            raise SpecError(f"{where + ': ' if where else ''}{e.message} [with {values}]", file=file,
                            key="parameters", expected=e.expected) from None
    return metric


def _check_network_fits(network: Network, arch, targets: list, constraints_file, *, file) -> None:
    """A layer of another kind (ranks, tensors) than the design's constraints were written for is named now,
    in one line, not found again by every trial's worker."""
    from coopt.backends.network import check_layer_kinds
    from coopt.errors import CooptError
    try:
        check_layer_kinds(list(network.layers), arch, targets, constraints_file)
    except CooptError as e:
        where = ": ".join(str(x) for x in (e.file, e.key) if x)
        raise SpecError(f"{where + ': ' if where else ''}{e.message}", file=file, key="workload.network",
                        expected=e.expected or "layers the design's constraints can hold") from None


def _first(p: Param):
    """The first value of a domain, without listing it."""
    if p.type == "categorical":
        return p.choices[0]
    return int(p.low) if p.type in ("int", "pow2") else p.low


def space_path(name_or_path) -> Path:
    """A shipped space by name (``tiny``, ``edge``) or a path to a search-space YAML."""
    text = str(name_or_path)
    if Path(text).suffix in (".yaml", ".yml") or "/" in text or "\\" in text:
        return Path(text)
    found = shipped_file("search_spaces", text)
    if found is None:
        raise SpecError(f"unknown search space '{text}'", key="--space",
                        expected=f"one of the shipped spaces {shipped_names('search_spaces')} or a path to a YAML")
    return found


def load_space(path) -> SearchSpace:
    """Read and validate a search-space YAML file (or a shipped space by name)."""
    path = str(space_path(path))
    raw = load_yaml(path)
    return space_from_dict(raw, file=path)


def space_from_dict(raw: dict, *, file=None) -> SearchSpace:
    unknown = set(raw) - set(TOP_KEYS)
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", file=file, expected=f"keys among {list(TOP_KEYS)}")
    template = _template(raw, file, _jinja_probes(raw, file))
    dataflow = raw.get("dataflow")
    if dataflow is not None and dataflow not in template.constraint_options:
        raise SpecError(f"template {template.name} has no dataflow '{dataflow}'", file=file, key="dataflow",
                        expected=f"one of {template.constraint_options}")
    # workload
    wl = raw.get("workload", "resnet50")
    if isinstance(wl, str):
        wl = {"network": wl}
    if not isinstance(wl, dict):
        raise SpecError("must be a network name or a mapping", file=file, key="workload",
                        expected="resnet50 or {network, batch, layers}")
    _name(wl.get("network", "resnet50"), file=file, key="workload.network", what=f"one of {network_names()}")
    batch = wl.get("batch", 1)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        raise SpecError(f"is {batch!r}", file=file, key="workload.batch",
                        expected=f"an integer from 1 to {MAX_BATCH:,}")
    try:
        from coopt.workload.user_network import parse_input_shapes
        network = get_network(wl.get("network", "resnet50"), batch=batch,
                              input_shapes=parse_input_shapes(wl.get("input_shape")),
                              base_dir=str(Path(file).parent) if file else None)   # a path: beside the space
    except SpecError as e:
        if e.file:                     # the model or problem file itself is wrong: say where
            raise
        raise SpecError(e.message, file=file, key="workload.network", expected=e.expected
                        or f"one of {network_names()}") from None
    if wl.get("layers") is not None:
        wanted = wl["layers"]
        if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
            raise SpecError("must be a non-empty list of layer names", file=file, key="workload.layers",
                            expected="names (strings), e.g. [conv1, layer1.0.conv1]")
        by_member = {m: l for l in network.layers for m in l.members}
        missing = [w for w in wanted if w not in by_member]
        if missing:
            raise SpecError(f"unknown layers {missing}", file=file, key="workload.layers",
                            expected=f"names like {list(by_member)[:4]}")
        picked = []
        for w in wanted:
            if by_member[w] not in picked:
                picked.append(by_member[w])
        network = Network(f"{network.name}[{len(picked)} layers]", tuple(picked))
    from coopt.study.sparsity import parse_sparsity
    sparsity = parse_sparsity(raw.get("sparsity"), network, file=file)
    if sparsity is None:              # the densities the network's problem files give, if any
        sparsity = network.densities
    elif network.densities:           # one source of densities: the section replaces the files' entirely
        from coopt.energy.notice import warn_once
        warn_once(f"{file or 'the search space'}: sparsity: replaces the densities in "
                  f"{network.source or network.name}'s problem files")
    # parameters
    params_node = raw.get("parameters")
    if not isinstance(params_node, dict) or not params_node:
        raise SpecError("no parameters to search", file=file, key="parameters",
                        expected="a mapping of template parameters to domains")
    params = [_param(str(k), v, template, file=file) for k, v in params_node.items()]
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise SpecError("must be a mapping", file=file, key="fixed")
    for k in fixed:
        if k in params_node:
            raise SpecError(f"'{k}' is both searched and fixed", file=file, key=f"fixed.{k}")
    try:
        template.resolve({**fixed, **{p.name: _first(p) for p in params}})
    except SpecError as e:
        raise SpecError(e.message, file=file, key="fixed", expected=e.expected) from None
    spec_metric = None
    if isinstance(template, SpecTemplate):
        spec_metric = _probe_spec(template, fixed, params, network, file=file)
    else:
        values = template.resolve({**fixed, **{p.name: _first(p) for p in params}})
        option = dataflow or (template.constraint_options[0] if template.constraint_options else None)
        _check_network_fits(network, template.instantiate(values),
                            template.constraints(option, values) if option else [], None, file=file)
    # mapper
    m = raw.get("mapper") or {}
    if not isinstance(m, dict):
        raise SpecError("must be a mapping", file=file, key="mapper", expected="{metric, budget, strategy}")
    unknown = set(m) - {"metric", "budget", "strategy", "seed"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", file=file, key="mapper", expected="metric, budget, strategy")
    try:
        metric = parse_metric(m["metric"]) if "metric" in m else None
    except SpecError as e:
        raise SpecError(e.message, file=file, key="mapper.metric", expected=e.expected) from None
    except Exception as e:
        raise SpecError(str(e), file=file, key="mapper.metric") from None
    if metric is None:                   # a spec's own optimization_metrics, as coopt map takes them; else EDP
        try:
            metric = parse_metric(spec_metric or "edp")
        except SpecError as e:
            raise SpecError(e.message, file=template.path, key="mapper.optimization_metrics",
                            expected=e.expected) from None
    budget = m.get("budget", 1500)
    if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= MAX_MAPPER_BUDGET:
        raise SpecError(f"budget is {budget!r}", file=file, key="mapper.budget",
                        expected=f"model evaluations per layer, from 1 to {MAX_MAPPER_BUDGET:,}")
    seed = m.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise SpecError(f"seed is {seed!r}", file=file, key="mapper.seed", expected=f"an integer from 0 to {MAX_SEED}")
    strategy = m.get("strategy", "hybrid")
    if strategy not in ("hybrid", "random", "exhaustive"):
        raise SpecError(f"strategy is {strategy!r}", file=file, key="mapper.strategy",
                        expected="hybrid, random or exhaustive")
    mapper = MapperOptions(metric=metric, budget=budget, seed=seed, strategy=strategy)
    # objectives
    objs = raw.get("objectives")
    if objs is None:
        objectives = list(DEFAULT_OBJECTIVES)
    else:
        if not isinstance(objs, list) or not objs:
            raise SpecError("must be a non-empty list", file=file, key="objectives",
                            expected="[{metric: energy_uj, direction: minimize}, ...]")
        objectives = []
        for i, o in enumerate(objs):
            k = f"objectives[{i}]"
            if not isinstance(o, dict):
                raise SpecError("must be a mapping", file=file, key=k, expected="{metric, direction}")
            name, direction = o.get("metric"), o.get("direction")
            if name not in METRIC_NAMES:
                raise SpecError(f"unknown metric {name!r}", file=file, key=f"{k}.metric",
                                expected=f"one of {list(METRIC_NAMES)}")
            if direction not in DIRECTIONS:
                raise SpecError(f"direction is {direction!r}", file=file, key=f"{k}.direction",
                                expected="minimize or maximize")
            objectives.append((name, direction))
        if len({n for n, _ in objectives}) != len(objectives):
            raise SpecError("an objective is listed twice", file=file, key="objectives")
    # budgets
    b = raw.get("budgets") or {}
    if not isinstance(b, dict):
        raise SpecError("must be a mapping", file=file, key="budgets", expected="{area_mm2: 4, power_mw: 500, ...}")
    budgets = {}
    for k, v in b.items():
        if not isinstance(k, str) or k not in BUDGET_METRICS:
            raise SpecError(f"unknown budget '{k}'", file=file, key=f"budgets.{k}",
                            expected=f"one of {list(BUDGET_METRICS)} (the unit is part of the name)")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            unit = k.rsplit("_", 1)[-1]
            raise SpecError(f"is {v!r}", file=file, key=f"budgets.{k}", expected=f"a positive number in {unit}")
        budgets[k] = float(v)
    # reference point for the hypervolume
    ref_node = raw.get("reference_point") or {}
    if not isinstance(ref_node, dict):
        raise SpecError("must be a mapping", file=file, key="reference_point", expected="objective metric: value")
    reference = []
    for name, direction in objectives:
        if name in ref_node:
            reference.append(float(_num(ref_node[name], file=file, key=f"reference_point.{name}")))
        elif direction == "maximize":
            reference.append(0.0)
        else:
            raise SpecError(f"no reference value for the minimised objective {name}", file=file,
                            key=f"reference_point.{name}", expected="a value worse than any design you care about")
    sampler_options = raw.get("sampler_options") or {}
    if not isinstance(sampler_options, dict):
        raise SpecError("must be a mapping", file=file, key="sampler_options")
    return SearchSpace(name=str(raw.get("name") or (Path(file).stem if file else "space")),
                       description=str(raw.get("description") or "").strip(), template=template,
                       dataflow=dataflow, network=network, params=params, fixed=dict(fixed), mapper=mapper,
                       objectives=objectives, budgets=budgets, reference=reference,
                       sampler_options=sampler_options, path=file, raw=raw, sparsity=sparsity)
