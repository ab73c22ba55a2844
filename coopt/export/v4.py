"""A trial of a spec-backed search written back as a timeloopfe v4 spec (``trial-N/v4/``).

Why: a user who searched their own v4 spec wants the chosen design in their
own form, ready for their own flow: the spec's files with the chosen values
written in (``v4/spec/``: each ``variables:`` entry set in place, each Jinja2
variable set by a ``{% set %}`` line at the top of the top file), every
layer's problem and coopt's mapping in v4 form (``v4/prob/``, ``v4/map/``:
:func:`coopt.arch.v4_mapping.to_v4_mapping`),
and the processed form ``timeloop-model`` reads (``v4/processed/<layer>.yaml``:
architecture, ``compound_components``, problem, mapping -- what timeloopfe writes
as ``parsed-processed-input.yaml``, without its ``architecture_constraints``:
timeloop-model (master 4cf6d4c, src/mapping/constraints.cpp ``SatisfiedBy``)
refuses a mapping whose loops at a level leave out, as unit factors, dimensions a
constraint's permutation lists before a non-unit one -- e.g. ``permutation: MC...``
with M=1, C=16 -- although such a mapping satisfies the constraint, and Timeloop's
own mapper writes them.  The constraints stay in ``v4/spec/``; the mapping obeys them).
``v4/run_v4.sh`` runs both through the real tools.

A layer's problem reaches the spec as the exercises do it: through the top
file's Jinja2 variable ``problem`` when it has one, else as one more input file
(:func:`layer_inputs`).
"""
from __future__ import annotations

import json
import re

from coopt.arch.spec_template import SpecTemplate
from coopt.arch.v4_mapping import to_v4_mapping
from coopt.arch.yaml_io import arch_from_yaml
from coopt.energy.accelergy_files import dumps_accelergy, shipped_classes_needed, with_required_actions
from coopt.errors import CooptError
from coopt.study.records import TrialRecord
from coopt.yamlio import dumps_yaml

__all__ = ["v4_files", "written_spec", "layer_inputs"]

_PROCESSED_KEYS = ("architecture", "compound_components", "problem", "mapping")


def _scalar(v) -> str:
    """A value as a v4 expression reads it back: numbers and booleans bare, strings quoted."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _set_variable(text: str, name: str, value) -> tuple[str, int]:
    """``name: ...`` inside the top-level ``variables:`` block of one file set to ``value`` (comments kept)."""
    lines, inside, hits = text.splitlines(keepends=True), False, 0
    for i, line in enumerate(lines):
        if re.match(r"variables\s*:\s*(#.*)?$", line.rstrip("\n")):
            inside = True
            continue
        if inside and line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
            inside = False
        m = re.match(rf"(\s+){re.escape(name)}(\s*:\s*)([^#\n]*?)(\s*#.*)?(\n?)$", line) if inside else None
        if m:
            lines[i] = f"{m.group(1)}{name}{m.group(2)}{_scalar(value)}{m.group(4) or ''}{m.group(5)}"
            hits += 1
    return "".join(lines), hits


def written_spec(t: SpecTemplate, values: dict) -> dict[str, str]:
    """The spec's files with ``values`` written in: relative path -> text."""
    jinja, over = t.split(values)
    files = dict(t.files)
    for name, value in over.items():
        found = []
        for rel, text in files.items():
            new, hits = _set_variable(text, name, value)
            if hits:
                found.append(rel)
                files[rel] = new
        if len(found) != 1:
            where = f"in {len(found)} files ({', '.join(found)})" if found else "written one per line"
            raise CooptError(f"cannot write the value of {name} into the spec: its variables: entry is not found "
                             f"once {where}", file=t.path, key=f"variables.{name}",
                             expected="the variable written once, as 'name: value' on a line of its own")
    if jinja:
        sets = "".join(f"{{% set {k} = {json.dumps(v)} %}}\n" for k, v in jinja.items())
        for rel in t.entry:
            files[rel] = (f"{{# chosen by coopt: the Jinja2 variables of this design #}}\n{sets}" + files[rel])
    return files


def layer_inputs(t: SpecTemplate, stem: str) -> tuple[list[str], dict]:
    """Files (relative to ``v4/``) and Jinja2 variables that read layer ``stem`` with its mapping."""
    entry = [f"spec/{e}" for e in t.entry]
    if "problem" in t.jinja_names:
        return entry + [f"map/{stem}.yaml"], {"problem": f"../prob/{stem}.yaml"}
    return entry + [f"prob/{stem}.yaml", f"map/{stem}.yaml"], {}


def _mapped(layer) -> bool:
    return bool(layer.found and layer.mapping_yaml)


def v4_files(rec: TrialRecord, stems: list[str]) -> dict[str, str]:
    """``v4/...`` relative path -> text for a trial whose record carries its spec (``rec.spec``)."""
    t = SpecTemplate.from_json(rec.spec)
    values = dict(rec.template_params)
    out = {f"v4/spec/{rel}": text for rel, text in written_spec(t, values).items()}
    raw, _ = t.load(values)
    arch = arch_from_yaml(raw["architecture"])
    base = {k: raw[k] for k in _PROCESSED_KEYS[:2] if k in raw}
    _carry_shipped_classes(base, arch)
    names = {c.get("name") for c in (base.get("compound_components") or {}).get("classes") or []}
    base["architecture"] = with_required_actions({"architecture": raw["architecture"]}, arch,
                                                 compound=names)["architecture"]
    commands = []
    for layer, stem in zip(rec.layers, stems):
        problem = dict(layer.problem_yaml["problem"])
        problem.setdefault("version", 0.4)
        out[f"v4/prob/{stem}.yaml"] = dumps_yaml({"problem": problem})
        if not _mapped(layer):
            continue
        out[f"v4/map/{stem}.yaml"] = dumps_yaml({"mapping": to_v4_mapping(layer.mapping_yaml["mapping"])})
        out[f"v4/processed/{stem}.yaml"] = dumps_accelergy({**base, "problem": problem,
                                                            "mapping": layer.mapping_yaml["mapping"]})
        files, jinja = layer_inputs(t, stem)
        commands.append((stem, files, jinja, layer.cycles, layer.energy_pj))
    out["v4/run_v4.sh"] = _script(rec.number, commands)
    out["v4/README.md"] = _readme(rec, t, commands)
    return out


def _carry_shipped_classes(base: dict, arch) -> None:
    """Add to the processed form the shipped classes coopt estimated with that the spec does not define
    (smartbuffer_RF, ...; regfile and intmac too when the spec brings no classes): real Accelergy knows
    none of them, and would otherwise fail or take a primitive where coopt did not."""
    cc = base.get("compound_components")
    given = isinstance(cc, dict) and isinstance(cc.get("classes"), list)
    extra = shipped_classes_needed(arch, [({"compound_components": cc}, "")] if given else [])
    if extra:
        cc = dict(cc) if given else {"version": 0.4, "classes": []}
        base["compound_components"] = {**cc, "classes": [*cc["classes"], *extra]}


def _readme(rec: TrialRecord, t: SpecTemplate, commands) -> str:
    jinja, over = t.split(dict(rec.template_params))
    lines = [f"# Trial {rec.number} as a timeloopfe v4 spec ({t.name})", "",
             "- `spec/`: the spec's own files with the chosen values written in"
             + (f" (variables: {', '.join(f'{k}={v}' for k, v in over.items())})" if over else "")
             + (f"; Jinja2 variables set at the top of {', '.join(t.entry)}: "
                f"{', '.join(f'{k}={v}' for k, v in jinja.items())}" if jinja else "") + ".",
             "- `prob/<layer>.yaml`, `map/<layer>.yaml`: each layer's problem and coopt's mapping, in v4 form "
             "(a fan-out's spatial factors on its container).",
             "- `processed/<layer>.yaml`: the processed form `timeloop-model` reads (timeloopfe's "
             "`parsed-processed-input.yaml`): architecture, component classes, problem, mapping; without the "
             "spec's constraints, which timeloop-model's own check refuses for mappings that leave a constrained "
             "dimension at factor 1 (the mapping obeys them; they stay in `spec/`).",
             "", "`./run_v4.sh` runs `timeloop-model` on each processed file and timeloopfe (`pytimeloop`) on the "
             "spec itself, printing Timeloop's cycles (and timeloop-model's energy) next to coopt's.  With coopt:", "", "```sh"]
    for _, files, jinja_vars, _, _ in commands:
        var = "".join(f" --var {k}={v}" for k, v in jinja_vars.items())
        lines.append(f"coopt evaluate {' '.join(files)}{var}")
    lines += ["```", ""]
    return "\n".join(lines)


def _script(number: int, commands) -> str:
    rows = "\n".join(f"{stem} {cycles} {energy!r}" for stem, _, _, cycles, energy in commands)
    fe = "\n".join(
        f"    {stem!r}: ({[f for f in files]!r}, {jinja!r}),".replace("'", '"') for stem, files, jinja, _, _ in commands)
    return f"""#!/bin/sh
# Trial {number}'s v4 export through the real tools (Accelergy estimates energies from the spec's own
# component classes; timeloop-model's cycles and energy are compared with coopt's).
#   ./run_v4.sh          timeloop-model on processed/<layer>.yaml   -> out-model/<layer>/
#   ./run_v4.sh --fe     timeloopfe (pytimeloop) on spec/ + layer   -> out-fe/<layer>/
set -u
cd "$(dirname "$0")"
status=0
if [ "${{1:-}}" = "--fe" ]; then
  python3 - <<'PY' || status=1
import os, re, sys
import pytimeloop.timeloopfe.v4 as tl
layers = {{
{fe}
}}
expected = {{l.split()[0]: (int(l.split()[1]), float(l.split()[2])) for l in '''{rows}'''.splitlines() if l.strip()}}
bad = 0
for stem, (files, jinja) in layers.items():
    out = os.path.abspath(f"out-fe/{{stem}}")
    os.makedirs(out, exist_ok=True)
    spec = tl.Specification.from_yaml_files(*files, jinja_parse_data=dict(jinja))
    tl.call_model(spec, output_dir=out)
    text = open(os.path.join(out, "timeloop-model.stats.txt")).read()
    cycles = int(re.search(r"^Cycles: (\\d+)", text, re.M).group(1))
    uj = float(re.search(r"^Energy: ([\\d.]+) uJ", text, re.M).group(1))
    want_cycles, want_pj = expected[stem]
    # Timeloop prints uJ to 2 decimals: equal within that rounding and 0.1 %
    ok = cycles == want_cycles and abs(uj - want_pj / 1e6) <= 0.005 + 0.001 * uj
    bad += not ok
    print(f"{{stem:24s}} cycles coopt {{want_cycles:>10d}} timeloopfe {{cycles:>10d}}  energy coopt "
          f"{{want_pj / 1e6:.2f}} uJ timeloopfe {{uj:.2f}} uJ  {{'PASS' if ok else 'FAIL'}}")
sys.exit(1 if bad else 0)
PY
  exit $status
fi
if ! command -v timeloop-model >/dev/null 2>&1; then
  echo "run_v4.sh: timeloop-model not found on PATH" >&2
  exit 2
fi
while read -r layer cycles pj; do
  [ -n "$layer" ] || continue
  mkdir -p "out-model/$layer"
  if ! (cd "out-model/$layer" && timeloop-model "../../processed/$layer.yaml" >timeloop-model.log 2>&1); then
    echo "$layer ERROR (see out-model/$layer/timeloop-model.log)"; status=1; continue
  fi
  stats="out-model/$layer/timeloop-model.stats.txt"
  got=$(awk '/^Summary Stats/ {{s = 1}} s && /^Cycles:/ {{print $2; exit}}' "$stats")
  uj=$(awk '/^Summary Stats/ {{s = 1}} s && /^Energy:/ {{print $2; exit}}' "$stats")
  # Timeloop prints uJ to 2 decimals: equal within that rounding and 0.1 %
  if [ "$got" = "$cycles" ] && awk -v a="$uj" -v b="$pj" 'BEGIN {{d = a - b / 1e6; if (d < 0) d = -d; exit !(d <= 0.005 + 0.001 * a)}}'; then
    r=PASS; else r=FAIL; status=1; fi
  printf '%-24s cycles coopt %10s timeloop-model %10s  energy coopt %.2f uJ timeloop-model %s uJ  %s\\n' \\
    "$layer" "$cycles" "$got" "$(awk -v b="$pj" 'BEGIN {{print b / 1e6}}')" "$uj" "$r"
done <<'LAYERS'
{rows}
LAYERS
exit $status
"""
