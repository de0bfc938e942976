"""Official openEO process specs (loaded at run time from ``openeo_processes_dask``).

The loader itself sits in the compiler layer (validation needs it and may not import this
layer); this module is the processes layer's entry point to it.
"""

from openeo_airflow.compiler.specs import (
    exception_spec,
    parameter_names,
    process_spec,
    required_parameters,
    spec_ids,
)

__all__ = [
    "exception_spec",
    "parameter_names",
    "process_spec",
    "required_parameters",
    "spec_ids",
]
