"""The one-way dependency rule and the registries the command line is built from.

The rule (docs/ARCHITECTURE.md): workload, arch, energy -> model -> mapper ->
design/inputs -> backends (engines) -> study -> tracking / export -> cli.  Every
``import`` in coopt's sources, function-level ones included, is checked.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from coopt.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
# Rank of each top-level module or package of coopt; an import may only go to an equal or lower rank.
RANK = {"errors": 0, "yamlio": 0, "outputs": 0, "shipped": 0, "progress": 0, "numbers": 0,
        "workload": 1, "arch": 1, "energy": 1, "results": 2, "model": 2, "mapper": 3, "design": 4, "inputs": 4,
        "backends": 5, "study": 6, "tracking": 7, "export": 7, "report": 8, "verification": 8, "cli": 9}
# Known and owned elsewhere: the study runner logs to MLflow itself until issue 9 moves that out of it.
KNOWN = {("coopt/study/runner.py", "tracking")}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coopt."):
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("coopt."))


def test_every_import_runs_one_way():
    upward = []
    for path in sorted((ROOT / "coopt").rglob("*.py")):
        rel = path.relative_to(ROOT)
        src = rel.parts[1].removesuffix(".py")
        if src == "__init__":
            continue
        assert src in RANK, f"{rel}: add its layer to RANK (and docs/ARCHITECTURE.md)"
        for module in _imports(path):
            dst = module.split(".")[1]
            if dst != src and RANK[dst] > RANK[src] and (str(rel), dst) not in KNOWN:
                upward.append(f"{rel} imports {module}")
    assert not upward, upward


def _accepts(*argv) -> bool:
    try:
        build_parser().parse_args(list(argv))
    except SystemExit:
        return False
    return True


def test_cli_choices_come_from_the_registries(monkeypatch):
    from coopt.backends import base
    from coopt.mapper.options import STRATEGIES
    from coopt.study import samplers
    from coopt.workload import networks

    assert not _accepts("network", "--engine", "toy") and not _accepts("search", "--sampler", "toy")
    # --network takes names and paths: an unknown name is refused when read, naming the registry's names
    assert main(["network", "--network", "toy"]) == 2
    monkeypatch.setitem(base.ENGINES, "toy", base.EngineInfo("toy", "coopt.backends.native:NativeBackend", "a toy"))
    monkeypatch.setitem(samplers.SAMPLERS, "toy", samplers.SamplerInfo("toy", lambda *a: None, "a toy"))
    monkeypatch.setitem(networks._BUILDERS, "toy", networks.resnet18)
    assert _accepts("evaluate", "x.yaml", "--engine", "toy") and _accepts("map", "x.yaml", "--engine", "toy")
    assert _accepts("network", "--engine", "toy") and _accepts("verify", "--study", "s", "--engine", "toy")
    assert not _accepts("verify", "--study", "s", "--engine", "native")     # verify needs a reference engine
    assert _accepts("search", "--sampler", "toy")
    assert all(_accepts("map", "x.yaml", "--strategy", name) for name in STRATEGIES)
    from coopt.mapper.search import STRATEGY_RUNNERS
    assert set(STRATEGY_RUNNERS) == set(STRATEGIES)        # every named strategy is implemented, and only those
    assert "toy" in build_parser()._subparsers._group_actions[0].choices["network"].format_help()
    assert networks.get_network("toy").name == "resnet18"
    # a registered engine is really used: the toy points at the native engine's class
    assert type(base.get_backend("toy")).__name__ == "NativeBackend"


def test_templates_are_the_shipped_files():
    from coopt.arch.template import available_templates
    assert available_templates() == sorted(p.stem for p in (ROOT / "arch_base").glob("*.yaml"))


@pytest.mark.parametrize("argv", [["network", "--engine", "nope"], ["search", "--sampler", "nope"],
                                  ["map", "x.yaml", "--strategy", "nope"], ["frobnicate"]])
def test_usage_errors_are_one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the coopt modules it imports (function-level imports included; ``from coopt.x import y``
    counts as importing ``coopt.x.y`` when that is a module, else ``coopt.x``)."""
    modules = {_module_name(p): p for p in (ROOT / "coopt").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coopt"):
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                out.update(subs or [node.module])
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("coopt."))
        graph[name] = {m for m in out if m in modules and m != name}
    return graph


def test_no_import_cycles():
    """No module reaches itself through imports (a cycle makes import order matter and layers blur)."""
    graph = _import_graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):                       # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles
