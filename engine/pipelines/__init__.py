"""Pipeline files: the format, loading a folder of them, and resolving parameters."""

from engine.pipelines.loader import Catalog, FileProblem, load_catalog, parse_pipeline
from engine.pipelines.references import undeclared_references
from engine.pipelines.schema import (
    ApprovalSpec,
    JenkinsSpec,
    ParallelSpec,
    Parameter,
    Pipeline,
    RunSpec,
    json_schema,
)

LeafStep = RunSpec | ApprovalSpec | JenkinsSpec

__all__ = [
    "ApprovalSpec",
    "Catalog",
    "FileProblem",
    "JenkinsSpec",
    "LeafStep",
    "ParallelSpec",
    "Parameter",
    "Pipeline",
    "RunSpec",
    "json_schema",
    "load_catalog",
    "parse_pipeline",
    "undeclared_references",
]
