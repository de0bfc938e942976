"""openEO processes on xarray cubes.

- ``graph.evaluate(process_graph, arguments=..., hooks=...)``: evaluate a process graph;
- ``registry``: ``implemented()``, ``get(process_id)``, ``list_processes()`` (``GET /processes``);
- ``specs.process_spec(process_id)``: the official spec JSON;
- families: ``math``, ``logic``, ``reducers``, ``indices``, ``cube`` (imported on first use of
  the registry, not by this package).
"""
