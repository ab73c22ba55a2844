"""Architectures: the spec (storage levels, PE mesh, arithmetic), Timeloop YAML in/out, templates."""
from coopt.arch.spec import Architecture, ArithmeticLevel, StorageLevel
from coopt.arch.template import Template, available_templates, load_template, templates_dir
from coopt.arch.yaml_io import arch_from_yaml, arch_to_yaml

__all__ = ["Architecture", "ArithmeticLevel", "StorageLevel", "Template", "available_templates", "load_template",
           "templates_dir", "arch_from_yaml", "arch_to_yaml"]
