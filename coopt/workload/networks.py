"""Whole networks as lists of Timeloop CONV layers, built from their block definitions.

Layers are generated from the architecture (stages, blocks, strides) rather
than typed in as a table, so the shapes follow from the definition and a
typo cannot hide.  Each layer is in Timeloop's CONV form: P,Q are *output*
sizes, R,S filter sizes, strides in Wstride/Hstride; padding is implicit
(Timeloop has none), so it only shows up in how P,Q are computed.
Layers with identical shapes are merged and counted, since a mapper only
needs to solve each distinct shape once.
"""
from __future__ import annotations

from coopt.errors import SpecError
from coopt.workload.network_types import Network, NetworkLayer, NotMapped, merge_layers, not_mapped_summary
from coopt.workload.problem import MAX_BOUND, Problem, conv_problem

# the types live in network_types (shared with the readers of users' networks); importable from here too
__all__ = ["Network", "NetworkLayer", "NotMapped", "merge_layers", "not_mapped_summary", "resnet50", "resnet18",
           "mobilenet_v2", "register_network", "network_names", "get_network"]


class _Builder:
    """Collects conv layers in network order, tracking the feature-map size."""

    def __init__(self, batch: int):
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BOUND:
            raise SpecError(f"batch is {batch!r}", key="batch", expected=f"an integer from 1 to {MAX_BOUND:,}")
        self.batch = batch
        self.entries: list[tuple[str, Problem, int]] = []

    def conv(self, name: str, size: int, cin: int, cout: int, k: int, stride: int = 1,
             *, repeat: int = 1) -> int:
        """Add a k x k conv with 'same' padding (k // 2) on a size x size input; return output size."""
        out = (size + 2 * (k // 2) - k) // stride + 1
        p = conv_problem(name, R=k, S=k, P=out, Q=out, C=cin, M=cout, N=self.batch,
                         Wstride=stride, Hstride=stride)
        self.entries.append((name, p, repeat))
        return out

    def fc(self, name: str, cin: int, cout: int) -> None:
        """A fully connected layer is a 1x1 conv on a 1x1 map."""
        self.conv(name, 1, cin, cout, 1)

    def network(self, name: str) -> Network:
        return Network(name, merge_layers(self.entries))


def _pool(size: int, k: int = 3, stride: int = 2) -> int:
    """Max-pool output size with padding k // 2 (torchvision's stem pool)."""
    return (size + 2 * (k // 2) - k) // stride + 1


def _resnet(name: str, batch: int, blocks: tuple[int, ...], bottleneck: bool) -> Network:
    """torchvision ResNet (v1.5: the stride sits on the 3x3 conv of a bottleneck)."""
    b = _Builder(batch)
    size = b.conv("conv1", 224, 3, 64, 7, 2)
    size = _pool(size)
    expansion = 4 if bottleneck else 1
    inplanes = 64
    for stage, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        for i in range(n):
            stride = 2 if (i == 0 and stage > 1) else 1
            pre = f"layer{stage}.{i}"
            size_in = size
            if bottleneck:
                s = b.conv(f"{pre}.conv1", size_in, inplanes, width, 1)
                s = b.conv(f"{pre}.conv2", s, width, width, 3, stride)
                s = b.conv(f"{pre}.conv3", s, width, width * expansion, 1)
            else:
                s = b.conv(f"{pre}.conv1", size_in, inplanes, width, 3, stride)
                s = b.conv(f"{pre}.conv2", s, width, width, 3)
            if stride != 1 or inplanes != width * expansion:
                b.conv(f"{pre}.downsample", size_in, inplanes, width * expansion, 1, stride)
            inplanes = width * expansion
            size = s
    b.fc("fc", inplanes, 1000)
    return b.network(name)


def resnet50(batch: int = 1) -> Network:
    """torchvision ResNet-50 v1.5 on 224x224: 53 convs + FC, bottlenecks [3, 4, 6, 3]."""
    return _resnet("resnet50", batch, (3, 4, 6, 3), bottleneck=True)


def resnet18(batch: int = 1) -> Network:
    """torchvision ResNet-18 on 224x224: 20 convs + FC, basic blocks [2, 2, 2, 2]."""
    return _resnet("resnet18", batch, (2, 2, 2, 2), bottleneck=False)


# torchvision MobileNetV2 inverted-residual settings: (expand t, out channels c, repeats n, stride s).
_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
         (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(batch: int = 1) -> Network:
    """torchvision MobileNetV2 (width 1.0) on 224x224: 52 convs + FC.

    Timeloop's CONV shape has no groups, so a depthwise 3x3 conv over G
    channels is modelled as G independent single-channel convs: a CONV layer
    with C=1, M=1 whose count is multiplied by G.  MACs and per-channel data
    volumes are exact; ``count`` (and so ``Network.total_layers``) then
    counts per-channel convs, while ``members`` still names each real layer once.
    """
    b = _Builder(batch)
    size = b.conv("features.0", 224, 3, 32, 3, 2)
    cin, idx = 32, 1
    for t, c, n, s in _MBV2:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            pre = f"features.{idx}"
            if t != 1:
                b.conv(f"{pre}.expand", size, cin, hidden, 1)
            size = b.conv(f"{pre}.depthwise", size, 1, 1, 3, stride, repeat=hidden)
            b.conv(f"{pre}.project", size, hidden, c, 1)
            cin, idx = c, idx + 1
    b.conv(f"features.{idx}", size, cin, 1280, 1)
    b.fc("classifier", 1280, 1000)
    return b.network("mobilenet_v2")


# The registry of networks by name: the CLI's --network choices and search spaces' workload: come from it.
_BUILDERS = {"resnet50": resnet50, "resnet18": resnet18, "mobilenet_v2": mobilenet_v2}
NETWORKS: tuple[str, ...] = tuple(_BUILDERS)          # the built-in ones


def register_network(name: str, builder) -> None:
    """Make ``builder(batch) -> Network`` available as ``--network name`` and ``workload: name``."""
    _BUILDERS[name.strip().lower()] = builder


def network_names() -> list[str]:
    return list(_BUILDERS)


def get_network(name: str, batch: int = 1, *, input_shapes: dict | None = None,
                base_dir: str | None = None) -> Network:
    """The named network at ``batch``, or a user's ONNX model or Timeloop problem files (a path,
    relative to ``base_dir`` if given); unknown names list the known ones."""
    builder = _BUILDERS.get(str(name).strip().lower())
    if builder is None:
        from coopt.workload.user_network import is_network_path, load_user_network
        if is_network_path(name, base_dir):
            return load_user_network(name, batch, input_shapes=input_shapes, base_dir=base_dir)
        raise SpecError(f"unknown network {name!r}", key="network",
                        expected=f"one of {', '.join(network_names())}, an .onnx model, or a folder or "
                                 "list of Timeloop problem files")
    if input_shapes:
        raise SpecError(f"input shapes {sorted(input_shapes)} given for the built-in network {name}",
                        key="--input-shape", expected="an ONNX model as --network")
    return builder(batch)
