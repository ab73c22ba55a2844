"""Problems in Timeloop's form: dimensions, data spaces as projections, and an instance.

A data space coordinate is a sum of terms ``coefficient * dimension`` (the
coefficient being a named value such as ``Wstride`` or 1).  That is exactly
Timeloop's ``problem.shape`` and is what the model projects tiles through.
CONV layers (``conv_problem``) are the common case; the 1-D tutorial shapes
and any other affine shape use the same class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Mapping

from coopt.errors import SpecError

# Largest dimension bound or coefficient accepted: far above any DNN layer (ResNet's largest is 224),
# small enough that tile sizes and access counts stay exact in 64-bit integers.
MAX_BOUND = 2**20

# One term of a data-space coordinate: (coefficient name or None for 1, dimension name).
Term = tuple[str | None, str]


@dataclass(frozen=True)
class DataSpace:
    """A tensor of the problem: its coordinates as sums of (coefficient, dimension) terms."""

    name: str
    projection: tuple[tuple[Term, ...], ...]
    read_write: bool = False

    def dims(self) -> frozenset[str]:
        """The problem dimensions this tensor depends on (its 'relevant' dimensions)."""
        return frozenset(d for coord in self.projection for _, d in coord)


@dataclass(frozen=True)
class Problem:
    """A problem shape plus one instance: dimension bounds and coefficient values."""

    name: str
    dims: tuple[str, ...]
    dataspaces: tuple[DataSpace, ...]
    bounds: Mapping[str, int]
    coefficients: Mapping[str, int] = field(default_factory=dict)
    shape_name: str = "CNN_Layer"

    def __post_init__(self):
        for d in self.dims:
            b = self.bounds.get(d)
            if not isinstance(b, int) or isinstance(b, bool) or b < 1 or b > MAX_BOUND:
                raise SpecError(f"dimension {d} has bound {b!r}", key=f"problem.instance.{d}",
                                expected=f"an integer from 1 to {MAX_BOUND:,}")
        for c, v in self.coefficients.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 1 or v > MAX_BOUND:
                raise SpecError(f"coefficient {c} is {v!r}", key=f"problem.instance.{c}",
                                expected=f"an integer from 1 to {MAX_BOUND:,}")
        for ds in self.dataspaces:
            for coord in ds.projection:
                for coef, dim in coord:
                    if dim not in self.dims:
                        raise SpecError(f"data space {ds.name} uses unknown dimension {dim}",
                                        key="problem.shape.data_spaces", expected=f"one of {list(self.dims)}")
                    if coef is not None and coef not in self.coefficients:
                        raise SpecError(f"data space {ds.name} uses unknown coefficient {coef}",
                                        key="problem.shape.coefficients")

    # -- derived quantities -------------------------------------------------
    def coef(self, name: str | None) -> int:
        return 1 if name is None else int(self.coefficients[name])

    @property
    def macs(self) -> int:
        """Number of operations (points of the iteration space)."""
        return prod(self.bounds[d] for d in self.dims)

    def dataspace(self, name: str) -> DataSpace:
        for ds in self.dataspaces:
            if ds.name == name:
                return ds
        raise SpecError(f"unknown data space {name}", expected=f"one of {[d.name for d in self.dataspaces]}")

    def tile_size(self, ds: DataSpace, extents: Mapping[str, int]) -> int:
        """Size of the dense box a block of ``extents`` iterations touches in ``ds``.

        Like Timeloop's axis-aligned hyper-rectangles: each coordinate spans
        ``sum(coef * (extent - 1)) + 1`` points, gaps included.
        """
        size = 1
        for coord in ds.projection:
            size *= sum(self.coef(c) * (extents.get(d, 1) - 1) for c, d in coord) + 1
        return size

    def dataspace_size(self, ds: DataSpace) -> int:
        return self.tile_size(ds, self.bounds)

    def signature(self) -> tuple:
        """Hashable identity of the shape and instance (names aside), for caches."""
        return (self.dims, self.dataspaces, tuple(sorted(self.bounds.items())),
                tuple(sorted(self.coefficients.items())))


CONV_DIMS = ("R", "S", "P", "Q", "C", "M", "N")
CONV_COEFFICIENTS = ("Wstride", "Hstride", "Wdilation", "Hdilation")


def conv_shape_dataspaces() -> tuple[DataSpace, ...]:
    """Timeloop's CNN-Layer data spaces: Weights[C,M,R,S], Inputs[N,C,W,H], Outputs[N,M,Q,P]."""
    return (
        DataSpace("Weights", (((None, "C"),), ((None, "M"),), ((None, "R"),), ((None, "S"),))),
        DataSpace("Inputs", (((None, "N"),), ((None, "C"),),
                             (("Wdilation", "R"), ("Wstride", "P")),
                             (("Hdilation", "S"), ("Hstride", "Q")))),
        DataSpace("Outputs", (((None, "N"),), ((None, "M"),), ((None, "Q"),), ((None, "P"),)),
                  read_write=True),
    )


def conv_problem(name: str = "conv", *, R: int = 1, S: int = 1, P: int = 1, Q: int = 1, C: int = 1,
                 M: int = 1, N: int = 1, Wstride: int = 1, Hstride: int = 1, Wdilation: int = 1,
                 Hdilation: int = 1) -> Problem:
    """A convolution layer in Timeloop's CONV form (R,S filter; P,Q output; C in; M out; N batch)."""
    return Problem(
        name=name,
        dims=("C", "M", "R", "S", "N", "P", "Q"),
        dataspaces=conv_shape_dataspaces(),
        bounds={"R": R, "S": S, "P": P, "Q": Q, "C": C, "M": M, "N": N},
        coefficients={"Wstride": Wstride, "Hstride": Hstride, "Wdilation": Wdilation,
                      "Hdilation": Hdilation},
        shape_name="CNN_Layer",
    )


def gemm_problem(name: str, m: int, k: int, n: int, batch: int = 1) -> Problem:
    """Z[m,n] = sum_k A[m,k] B[k,n] as Timeloop's CNN layer: C=k, M=n, P=m (``batch`` rows sharing B on N).
    B takes the Weights' place, A the Inputs': every tile size, and so every access count, equals the
    einsum form's for the same loop nest (tests/test_network_inputs.py), and the templates' dataflow
    constraints, written for the CNN layer's ranks, apply."""
    return conv_problem(name, C=k, M=n, P=m, N=batch)


def contraction_as_gemm(problem: Problem) -> tuple[Problem, int] | None:
    """A two-operand contraction in any ranks (an einsum-style problem: two read-only tensors, one
    read-write, every coordinate one rank) as ``(gemm_problem, independent copies)``; None otherwise.
    Ranks in all three tensors are independent copies (heads), as the built-in depthwise layers."""
    spaces = problem.dataspaces
    if (len(spaces) != 3 or [ds.read_write for ds in spaces] != [False, False, True]
            or any(len(c) != 1 or c[0][0] is not None for ds in spaces for c in ds.projection)):
        return None
    a, b, z = (ds.dims() for ds in spaces)
    size = problem.bounds
    kinds = {"batch": a & b & z, "m": (a & z) - b, "n": (b & z) - a, "k": (a & b) - z}
    if set().union(*kinds.values()) != set(problem.dims):
        return None                   # a rank of one tensor only, or in no tensor: not a plain contraction
    m, n, k, copies = (prod(size[d] for d in kinds[x]) for x in ("m", "n", "k", "batch"))
    return gemm_problem(problem.name, m, k, n), copies


def move_code_fits(problem: Problem) -> bool:
    """Whether the native model can encode this problem's tile moves exactly in 64 bits
    (``coopt.model.nest``: one mixed-radix digit per coordinate, radix from the largest span)."""
    span = max(problem.dataspace_size(DataSpace(ds.name, (coord,))) for ds in problem.dataspaces
               for coord in ds.projection)
    coords = max(len(ds.projection) for ds in problem.dataspaces)
    return (2 * (2 * span + 1) + 1) ** coords < 2**62


def compact(problem: Problem, *, always: bool = False) -> Problem:
    """The problem without coordinates that only ranks bounded 1 index: the same tile sizes, so
    the same Timeloop figures, in fewer coordinates.  Used only where the full form's moves would
    not fit the model's 64-bit encoding (a GEMM of 50,257 columns in the CNN layer's four
    coordinates): layers that fit keep the form every other tool writes."""
    if not always and move_code_fits(problem):
        return problem
    spaces = tuple(DataSpace(ds.name, tuple(c for c in ds.projection
                                            if any(problem.bounds[d] > 1 for _, d in c)) or ds.projection[:1],
                             ds.read_write) for ds in problem.dataspaces)
    return Problem(problem.name, problem.dims, spaces, dict(problem.bounds), dict(problem.coefficients),
                   f"{problem.shape_name}_compact")
