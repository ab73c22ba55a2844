"""Workloads: Timeloop-style problems, whole networks, and Timeloop YAML I/O (no heavy imports)."""
from coopt.workload.networks import (NETWORKS, Network, NetworkLayer, get_network, mobilenet_v2,
                                     network_names, register_network, resnet18, resnet50)
from coopt.workload.problem import DataSpace, Problem, conv_problem
from coopt.workload.yaml_io import load_problem, problem_from_yaml, problem_to_yaml

__all__ = ["DataSpace", "Problem", "conv_problem", "Network", "NetworkLayer", "NETWORKS", "get_network",
           "network_names", "register_network", "resnet50", "resnet18", "mobilenet_v2", "problem_from_yaml",
           "problem_to_yaml", "load_problem"]
