"""The ``accelforge`` engine (optional extra): AccelForge's FFM mapper and model on one layer.

AccelForge (PyPI ``accelforge``, the Accelergy project's successor to
Timeloop, energy/area through ``hwcomponents``) needs Python >= 3.12; install
with ``pip install 'coopt[accelforge]'``.  Everything here imports it lazily.

Translation.  Storage levels become ``Memory`` nodes (outermost first, size in
bits, ``bits_per_value`` = the level's word bits), zero-capacity
``dummy_storage`` levels become ``Container`` nodes, and every X/Y fan-out
becomes a ``Spatial`` of a container placed just inside the level that fans
out.  Energies, areas and leakage come from coopt's tables (built-in
estimates or the user's Accelergy ERT/ART) as fixed per-action values, so
both engines price an access the same way: one AccelForge action moves a
whole row (``bits_per_action`` = the row width, like Timeloop's vector
access); throughput = bandwidth (words/cycle) / block size * clock.
From Timeloop constraints only bypass (keep/bypass) and the spatial factor
and X/Y split rules are carried over (``loop_bounds == 1`` on each fan-out);
temporal factors and permutations are left to AccelForge's mapper.  With
``energy="hwcomponents"`` AccelForge's own component models price the
design instead (its classes SmartBufferSRAM, LPDDR4..., IntMAC).

Semantics that differ from Timeloop v3 (noticed while writing this):

* No mapper budget or seed: FFM enumerates (prunes) the whole mapspace and
  is exact for its model, but that takes minutes per layer on 2 cores; the
  only limits are wall/CPU time and memory.  ``timeout_s`` here kills the
  run (in a child process) rather than returning the best mapping so far.
* Loops are not owned by levels: a mapping is a sequence of storage nodes
  (one per tensor and memory) and loops, so a tensor's tile can be placed
  at a different loop depth than the other tensors of the same level
  (Timeloop's "uneven" mappings), and loops with no reuse are pruned.
* Tensors named ``Inputs``/``Outputs`` clash with AccelForge's built-in
  set names, so data spaces are renamed to lower case.
* Accesses are counted in bits, then divided by ``bits_per_action``
  (Timeloop counts words and vector accesses, rounding partial blocks up).
  Memories have only read and write actions: Timeloop's fills and updates
  are both writes.
* Latency is in seconds: each component's time is ``n_calls/throughput``
  (here the max over its read and write actions, Timeloop's separate read and
  write bandwidths); the slowest component sets the layer latency.  It is
  converted back to cycles at the design's clock.  DRAM without a bandwidth
  is infinitely fast, as in Timeloop.
* Area is per component times all its instances (m^2 in AccelForge,
  reported here in um^2); containers have none.
* Measured on ResNet-50 layers (benchmarks/accelforge_results.md): the same
  mapping costs 2-4 % more in AccelForge (psum scratchpad: Timeloop skips
  the first read of each partial sum; leakage is charged to the MAC), and
  AccelForge's best mapping is 11 % above Timeloop's best on conv2_x because
  mappings Timeloop finds are not in its mapspace (likely: Timeloop keeps a
  per-PE tile across the GLB's innermost loops that do not index it; in
  AccelForge a tile lives only below its storage node).  Cycles and area
  agree exactly.
* The chosen mapping also comes back in Timeloop's form (``timeloop_mapping``
  in the result), so that coopt's model can price it.
* AccelForge 1.0.467's ``map_workload_to_arch`` writes ``mapping.svg`` to
  the working directory through graphviz's ``dot`` and fails where that is
  not installed; this module evaluates the chosen mapping itself instead.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from coopt.errors import BinaryNotFound, CooptError

INSTALL_HINT = "Python >= 3.12 and pip install 'coopt[accelforge]'"
HWC_CLASSES = {"DRAM": "{type}", "smartbuffer_SRAM": "SmartBufferSRAM", "smartbuffer_RF": "SmartBufferSRAM",
               "SRAM": "SmartBufferSRAM", "regfile": "SmartBufferSRAM", "intmac": "IntMAC"}


def available() -> bool:
    """True when accelforge can be imported (Python >= 3.12 with the extra installed)."""
    try:
        import accelforge  # noqa: F401
    except Exception:
        return False
    return True


def _af():
    try:
        import accelforge
    except Exception:
        raise BinaryNotFound("AccelForge is not installed", expected=INSTALL_HINT) from None
    return accelforge


def version() -> str:
    _af()
    from importlib.metadata import version as v
    return v("accelforge")


def _tensor(name: str) -> str:
    return name.lower()


def _rank_var(dim: str) -> str:
    return dim.lower()


def _einsum_name(problem) -> str:
    return re.sub(r"\W", "_", problem.name) or "layer"


# --------------------------------------------------------------------------- workload
def translate_layer(problem):
    """coopt Problem -> AccelForge Workload with one Einsum (tensors lower-cased, rank variables = dims)."""
    af = _af()
    from accelforge.frontend.workload import Einsum, TensorAccess
    accesses = []
    for ds in problem.dataspaces:
        proj = {}
        for i, coord in enumerate(ds.projection):
            expr = " + ".join(_rank_var(d) if problem.coef(c) == 1 else f"{problem.coef(c)} * {_rank_var(d)}"
                              for c, d in coord)
            single = len(coord) == 1 and problem.coef(coord[0][0]) == 1
            proj[coord[0][1].upper() if single else f"{ds.name.upper()}{i}"] = expr
        accesses.append(TensorAccess(name=_tensor(ds.name), projection=proj, output=ds.read_write))
    shape = [f"0 <= {_rank_var(d)} < {int(problem.bounds[d])}" for d in problem.dims]
    einsum = Einsum(name=_einsum_name(problem), tensor_accesses=accesses, iteration_space_shape=shape)
    return af.Workload(einsums=[einsum], bits_per_value={"All": 8})


# --------------------------------------------------------------------------- architecture
def _is_dummy(lvl) -> bool:
    return "dummy" in lvl.cls.lower() or (lvl.depth is not None and lvl.depth <= 1 and (lvl.width or 1) <= 1)


def _targets_by(targets, level, kind):
    return [t for t in targets or [] if t.get("target") == level and t.get("type", "temporal") == kind]


def _ones(factors) -> set[str]:
    """Dims a Timeloop ``factors`` entry pins to 1 ("C=1 M<=4" or ["C=1", ...])."""
    items = factors.replace(",", " ").split() if isinstance(factors, str) else list(factors or [])
    return {m.group(1) for it in items if (m := re.fullmatch(r"\s*(\w+)\s*=\s*1\s*", str(it)))}


def _spatial_bounds(targets, level, dims) -> tuple[set, set]:
    """Dims forbidden on the X and on the Y fan-out of ``level`` by its spatial constraints."""
    bad_x, bad_y = set(), set()
    for t in _targets_by(targets, level, "spatial"):
        ones = _ones(t.get("factors"))
        bad_x |= ones
        bad_y |= ones
        perm = [p for p in str(t.get("permutation", "")) if p.isalpha()]
        if perm and "split" in t:
            split = int(t["split"])
            bad_y |= set(perm[:split])     # dims before the split are X dims
            bad_x |= set(perm[split:])
    return bad_x & set(dims), bad_y & set(dims)


def _keep(targets, level, problem) -> tuple[str, str] | None:
    for t in _targets_by(targets, level, "bypass"):
        keep = [_tensor(n) for n in t.get("keep") or []]
        names = {_tensor(d.name) for d in problem.dataspaces} if problem else set(keep)
        keep = [k for k in keep if k in names]
        return (" | ".join(keep) if keep else "Nothing"), "Nothing"
    return None


def translate_arch(arch, tables=None, targets=None, problem=None, *, energy: str = "tables"):
    """coopt Architecture (+ energy tables, Timeloop constraint targets) -> AccelForge Arch.

    ``tables`` default to coopt's built-in estimates; ``targets`` (e.g. a
    template's row-stationary constraints) are translated as described in the
    module docstring; ``problem`` names the dims those constraints may refer to.
    """
    af = _af()
    from accelforge.frontend.arch import Comparison, Compute, Container, Memory, Spatial
    if tables is None and energy == "tables":
        from coopt.energy.estimate import estimate
        tables = estimate(arch)
    clock = arch.clock_hz
    dims = tuple(problem.dims) if problem is not None else ("C", "M", "R", "S", "N", "P", "Q")
    tech = {"tech_node": float(re.sub(r"[^0-9.]", "", arch.technology) or 45) * 1e-9}
    nodes = []
    levels = list(reversed(arch.storage))            # outermost first
    for i, lvl in enumerate(levels):
        if not _is_dummy(lvl):
            words = lvl.block_size
            row = lvl.word_bits * words
            thr = {op: (bw / words * clock if bw else math.inf)
                   for op, bw in (("read", lvl.read_bandwidth), ("write", lvl.write_bandwidth))}
            kw = dict(name=lvl.name, size=math.inf if lvl.size is None else lvl.size * lvl.word_bits,
                      bits_per_value={"All": lvl.word_bits},
                      total_latency="max(a.n_calls / a.throughput for a in actions)")
            if energy == "tables":
                kw["actions"] = [
                    {"name": "read", "energy": tables.storage_energy(lvl.name, "read") * 1e-12,
                     "throughput": thr["read"], "bits_per_action": row},
                    {"name": "write", "energy": tables.storage_energy(lvl.name, "fill") * 1e-12,
                     "throughput": thr["write"], "bits_per_action": row}]
                kw.update(area=tables.area(lvl.name) * 1e-12,
                          leak_power=tables.storage_energy(lvl.name, "leak") * 1e-12 / arch.cycle_seconds)
            else:
                cls = HWC_CLASSES.get(lvl.cls, lvl.cls)
                kw.update(component_class=cls.format(type=lvl.attributes.get("type", "LPDDR4")),
                          actions=[{"name": "read", "bits_per_action": row},
                                   {"name": "write", "bits_per_action": row}],
                          extra_attributes_for_component_model={
                              **tech, **({"n_banks": lvl.attributes["n_banks"]} if "n_banks" in lvl.attributes
                                         else {})})
            if i == 0:
                kw["tensors"] = {"keep": "All"}
            else:
                keep = _keep(targets, lvl.name, problem)
                kw["tensors"] = {"keep": keep[0], "may_keep": keep[1]} if keep else {"may_keep": "All"}
            nodes.append(Memory(**kw))
        inner = levels[i + 1] if i + 1 < len(levels) else arch.arithmetic
        fx, fy = inner.mesh_x // lvl.mesh_x, inner.mesh_y // lvl.mesh_y
        if fx * fy > 1:
            bad_x, bad_y = _spatial_bounds(targets, lvl.name, dims)
            spatial = []
            for axis, n, bad in (("X", fx, bad_x), ("Y", fy, bad_y)):
                if n > 1:
                    bounds = ([Comparison(expression=" | ".join(sorted(_rank_var(d) for d in bad)),
                                          operator="==", value=1)] if bad else [])
                    spatial.append(Spatial(name=f"{lvl.name}_{axis}", fanout=n, loop_bounds=bounds))
            nodes.append(Container(name=lvl.name if _is_dummy(lvl) else f"{lvl.name}_fanout", spatial=spatial))
    mac = arch.arithmetic
    if energy == "tables":
        nodes.append(Compute(name=mac.name, actions=[{"name": "compute", "energy": tables.compute_energy(mac.name)
                                                      * 1e-12, "throughput": clock}],
                             area=tables.area(mac.name) * 1e-12,
                             leak_power=tables.storage_energy(mac.name, "leak") * 1e-12 / arch.cycle_seconds))
    else:
        attrs = {**tech, "multiplier_width": mac.attributes.get("multiplier_width", mac.word_bits),
                 "adder_width": mac.attributes.get("adder_width", mac.word_bits)}
        nodes.append(Compute(name=mac.name, component_class=HWC_CLASSES.get(mac.cls, mac.cls),
                             total_latency=f"sum(a.n_calls for a in actions) / {clock!r}",
                             extra_attributes_for_component_model=attrs))
    return af.Arch(nodes=nodes)


# --------------------------------------------------------------------------- mapping back to Timeloop
_LOOPS = r"|T-(\w+) in \[0\.\.(\d+)\)|S-(\w+)-(\w+) in \[0\.\.(\d+)\)"
_TOKEN = {True: re.compile(r"([\w,]+) reserves (\w+)" + _LOOPS), False: re.compile(r"\[([\w,]+) in (\w+)\]" + _LOOPS)}


def timeloop_mapping(compact: str, arch, problem) -> list[dict]:
    """An AccelForge mapping (its ``compact_str()``) as Timeloop mapping directives.

    A level keeps the tensors that reserve room there (the storage node may
    sit higher than the reservation).  A loop goes to the innermost level all
    of whose tiles are reserved above it (or to the fan-out container above
    it), as in Timeloop, where a level's loops iterate inside its tiles.  An
    uneven placement (one tensor's tile above a loop, another's below) thus
    puts the loop one level up: no tile grows, but the first tensor may be
    refetched across it in Timeloop's model.  A dim split over both X and Y
    of one fan-out lands on X (Timeloop has one loop per dim and level).
    """
    names = [l.name for l in arch.storage]
    back = {_tensor(d.name): d.name for d in problem.dataspaces}
    dims = {_rank_var(d): d for d in problem.dims}
    temporal = {n: [] for n in names}
    spatial = {n: {"X": [], "Y": []} for n in names}
    keep = {n: [] for n in names}
    tokens = list(_TOKEN[" reserves " in compact].finditer(compact))
    for m in tokens:
        if m.group(2):
            keep[m.group(2)] += [back[t] for t in m.group(1).split(",") if t in back]
    placed = {n: set() for n in names}
    current = names[-1]
    for m in tokens:
        tensors, level, rv, n, sname, srv, sn = m.groups()
        if level:
            placed[level] |= {back[t] for t in tensors.split(",") if t in back}
            if placed[level] >= set(keep[level]):
                current = level
        elif rv:
            temporal[current].append((dims[rv], int(n)))
        else:
            owner, axis = sname.rsplit("_", 1)
            current = owner[:-len("_fanout")] if owner.endswith("_fanout") else owner
            spatial[current][axis].append((dims[srv], int(sn)))
    out = []
    for lvl in arch.storage:
        n = lvl.name
        out.append({"target": n, "type": "datatype", "keep": keep[n],
                    "bypass": [d.name for d in problem.dataspaces if d.name not in keep[n]]})
        f = {d: 1 for d in problem.dims}
        for d, k in temporal[n]:
            f[d] *= k
        inner = [d for d, _ in reversed(temporal[n])]
        perm = list(dict.fromkeys(inner + list(problem.dims)))
        out.append({"target": n, "type": "temporal", "factors": " ".join(f"{d}{f[d]}" for d in problem.dims),
                    "permutation": "".join(perm)})
        if spatial[n]["X"] or spatial[n]["Y"]:
            s = {d: 1 for d in problem.dims}
            for d, k in spatial[n]["X"] + spatial[n]["Y"]:
                s[d] *= k
            xs = list(dict.fromkeys(d for d, _ in spatial[n]["X"]))
            ys = [d for d in dict.fromkeys(d for d, _ in spatial[n]["Y"]) if d not in xs]
            out.append({"target": n, "type": "spatial", "factors": " ".join(f"{d}{s[d]}" for d in problem.dims),
                        "permutation": "".join(list(dict.fromkeys(xs + ys + list(problem.dims)))),
                        "split": len(xs)})
    return out


# --------------------------------------------------------------------------- mapping
_METRICS = {"energy": "ENERGY", "delay": "LATENCY", "latency": "LATENCY", "edp": "ENERGY_DELAY_PRODUCT"}


def _run(problem, arch, tables, targets, energy, metric, mapper_opts) -> dict:
    af = _af()
    from copy import deepcopy
    from accelforge.mapper.FFM.main import map_workload_to_arch
    from accelforge.model.main import evaluate_mapping
    t0 = time.perf_counter()
    spec = af.Spec(arch=translate_arch(arch, tables, targets, problem, energy=energy),
                   workload=translate_layer(problem))
    names = [m.strip() for m in (metric.split(",") if isinstance(metric, str) else metric)]
    flags = [getattr(af.Metrics, _METRICS[n]) for n in names]
    spec.mapper.metrics = flags[0] if len(flags) == 1 else flags[0] | flags[1]
    for k, v in mapper_opts.items():
        setattr(spec.mapper, k, v)
    mappings = map_workload_to_arch(spec, print_progress=False, eval_in_detail=False)
    if len(mappings.data) == 0:
        raise CooptError("AccelForge found no valid mapping", key=problem.name)
    best = 0
    if len(mappings.data) > 1:       # several objectives: a Pareto set, take the lexicographic best
        cols = [f"Total<SEP>{'latency' if n in ('delay', 'latency') else n}" for n in names]
        best = int(mappings.data.reset_index(drop=True).sort_values(cols).index[0])
    local = deepcopy(spec)
    local.model.metrics = local.mapper.info_metrics
    local.mapping = mappings.data.iloc[best]["Total<SEP>mapping"](_for_model=True)
    r = evaluate_mapping(local, flattened_arches=mappings.flattened_arches, evaluated_specs=mappings.evaluated_specs)
    seconds = time.perf_counter() - t0
    area = spec.calculate_component_costs(energy=False, throughput=False, leak=False).arch.total_area
    latency = float(r.latency())
    per_level = {k: float(v) * 1e12 for k, v in r.energy(per_component=True).items()}
    compact = local.mapping.compact_str()
    try:
        directives = timeloop_mapping(compact, arch, problem)
    except Exception:                  # a shape this translation does not know: keep the AccelForge text only
        directives = None
    return {"engine": "accelforge", "version": version(), "energy_pj": float(r.energy()) * 1e12,
            "cycles": latency * arch.clock_hz, "latency_s": latency, "area_um2": float(area) * 1e12,
            "seconds": seconds, "macs": problem.macs, "pj_per_mac": float(r.energy()) * 1e12 / problem.macs,
            "levels": per_level, "pareto_mappings": int(len(mappings.data)),
            "mapping": compact, "timeloop_mapping": directives}


def map_layer(problem, arch, *, tables=None, targets=None, timeout_s: float | None = None,
              metric="delay,energy", energy: str = "tables", **mapper_opts) -> dict:
    """Map one layer with AccelForge's mapper; energy in pJ, cycles at the design's clock, area in um^2.

    ``metric``: ``energy``, ``delay``, ``edp`` or two of them as
    ``"delay,energy"`` (the Pareto set, then the lexicographic best, like
    Timeloop's ``[delay, energy]``).  ``mapper_opts`` set fields of
    AccelForge's FFM config (``max_loops``, ``explore_loop_orders``, ...).
    With ``timeout_s`` the run happens in a child process that is killed
    (with its workers) when the time is up: CooptError.
    """
    _af()
    if timeout_s is None:
        return _run(problem, arch, tables, targets, energy, metric, mapper_opts)
    import pickle
    with tempfile.TemporaryDirectory(prefix="coopt-accelforge-") as work:
        job = os.path.join(work, "job.pkl")
        with open(job, "wb") as f:
            pickle.dump((problem, arch, tables, targets, energy, metric, mapper_opts), f)
        code = ("import pickle, json, sys; from coopt.backends.accelforge_backend import _run; "
                "a = pickle.load(open(sys.argv[1], 'rb')); r = _run(*a); "
                "open(sys.argv[2], 'w').write(json.dumps(r))")
        out = os.path.join(work, "result.json")
        proc = subprocess.Popen([sys.executable, "-c", code, job, out], cwd=work, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise CooptError(f"AccelForge did not finish within {timeout_s:g} s", key=problem.name) from None
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (err or "").strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise CooptError(f"AccelForge failed: {tail[0]}", key=problem.name)
        with open(out) as f:
            return json.load(f)


# --------------------------------------------------------------------------- engine interface
class AccelForgeBackend:
    """``--engine accelforge``: map_layer returns a LayerResult whose eval carries AccelForge's totals.

    Its ``mapping`` is AccelForge's mapping turned into Timeloop's form
    (``timeloop_mapping``; None where that fails).  Evaluating a fixed
    Timeloop mapping with AccelForge is not offered.
    """

    name = "accelforge"

    def __init__(self, timeout_s: float | None = 3600):
        self.timeout_s = timeout_s
        _af()

    def evaluate(self, problem, arch, tables, mapping):
        raise CooptError("the accelforge engine maps layers; it cannot evaluate a fixed Timeloop mapping",
                         key="--engine", expected="--engine native or timeloop for coopt evaluate")

    def map_layer(self, layer, arch, tables, constraints, options):
        from coopt.model.evaluate import LevelEval, MappingEval
        from coopt.results import LayerResult
        metric = ",".join(options.metric[:2]) if options.metric != ("edp",) else "edp"
        try:
            r = map_layer(layer.problem, arch, tables=tables, targets=getattr(constraints, "source", None),
                          timeout_s=self.timeout_s, metric=metric)
        except BinaryNotFound:
            raise
        except CooptError as e:
            return LayerResult(name=layer.name, count=layer.count, problem=layer.problem, mapping=None, eval=None,
                               engine=self.name, reason=e.message, members=layer.members)
        mapping = None
        if r.get("timeloop_mapping"):
            from coopt.model.mapping import mapping_from_yaml
            try:
                mapping = mapping_from_yaml(r["timeloop_mapping"], arch, layer.problem)
            except CooptError:
                mapping = None
        cycles = int(round(r["cycles"]))
        macs = layer.problem.macs
        levels = [LevelEval(name=l.name, energy_pj=r["levels"].get(l.name, 0.0), leak_pj=0.0, cycles=cycles,
                            instances_used=0) for l in arch.storage]
        ev = MappingEval(valid=True, reason="", energy_pj=r["energy_pj"], cycles=cycles, compute_cycles=cycles,
                         utilization=macs / max(1, cycles * arch.arithmetic.instances), macs=macs,
                         mac_energy_pj=r["levels"].get(arch.arithmetic.name, 0.0), area_um2=r["area_um2"],
                         levels=levels)
        return LayerResult(name=layer.name, count=layer.count, problem=layer.problem, mapping=mapping, eval=ev,
                           engine=self.name, seconds=r["seconds"], members=layer.members)
