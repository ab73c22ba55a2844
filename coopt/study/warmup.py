"""Compile the model's kernels once, in the driver, before any worker starts.

Why: numba compiles what its on-disk cache lacks (the first run after installing: about a minute on a
quiet machine).  Left to the workers, every Ray worker compiled the same kernels at once, for minutes
on a loaded machine, in silence, and charged that time to its first trials' ``eval_s`` and per-layer
seconds.  Here the driver maps one layer of one design of the space at a small budget with the
compiled paths forced on: a cold cache is filled (numba's own notice says so, once, from this
process) and the workers then only load it.  With a warm cache this costs about a second.
"""
from __future__ import annotations

import time
from dataclasses import replace

WARMUP_BUDGET = 64          # mappings: enough to run every kernel of a search once


def middle_design(space) -> dict:
    """One design of the space: each parameter's middle value (the kernels' types do not depend on it)."""
    out = {}
    for p in space.params:
        values = p.values()
        out[p.name] = values[len(values) // 2] if values else (float(p.low) + float(p.high)) / 2
    return out


def compile_kernels(space, energy: str | None, say=None) -> float | None:
    """Run the kernels once in this process; return the seconds numba spent compiling (None: nothing was
    compiled, the cache was warm, or numba is off).  ``say(line)`` reports a compilation and its time."""
    import os

    from coopt.model import jit
    if not jit.AVAILABLE or os.environ.get("COOPT_JIT") == "0":
        return None
    from numba.core import event

    from coopt.energy.select import ENV, set_method
    from coopt.model import kernel  # noqa: F401 - registers the "compiling" notice
    from coopt.study.trial import evaluate_design
    from coopt.workload.networks import Network

    compiled = []

    class Count(event.Listener):
        def on_start(self, ev):
            compiled.append(time.perf_counter())

        def on_end(self, ev):
            pass

    listener = Count()
    event.register("numba:compile", listener)
    saved, saved_energy = dict(jit._state), os.environ.get(ENV)
    jit._state.update(on=True, asked=max(jit._state["asked"], jit.MIN_WORK_SINGLE))   # every compiled path
    t0 = time.perf_counter()
    try:
        set_method(energy)
        params = middle_design(space)
        network = Network(space.network.name, space.network.layers[:1])
        evaluate_design(-1, params, space.template, space.template_params(params), space.dataflow, network,
                        replace(space.mapper, budget=min(WARMUP_BUDGET, space.mapper.budget)), {},
                        space.objectives)
    except Exception:              # noqa: BLE001 - a design this space cannot build: the workers compile
        pass
    finally:
        event.unregister("numba:compile", listener)
        jit._state.clear()
        jit._state.update(saved)
        if saved_energy is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved_energy
    if not compiled:
        return None
    seconds = time.perf_counter() - t0
    if say is not None:
        say(f"coopt: kernels compiled in {seconds:.0f} s; the workers load them from numba's cache")
    return seconds
