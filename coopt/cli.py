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
    result = evaluate(inputs.problem, inputs.arch, inputs.tables, inputs.mapping())
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(evaluation_text(result, inputs.problem, inputs.arch, inputs.tables.source))
    return 0 if result.valid else 1


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coopt", description="Hardware-mapping co-optimizer for DNN accelerators.")
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="evaluate one mapping like timeloop-model",
                        description="Evaluate a mapping of a layer on an architecture, like timeloop-model. "
                                    "The YAML files' top-level keys (architecture, problem, mapping, ...) are merged.")
    ev.add_argument("files", nargs="+", help="YAML files with architecture, problem and mapping")
    ev.add_argument("--ert", help="Accelergy ERT.yaml: use its energies instead of coopt's estimates")
    ev.add_argument("--art", help="Accelergy ART.yaml: use its areas instead of coopt's estimates")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_cmd_evaluate)

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
