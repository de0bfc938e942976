"""openEO processes on xarray cubes.

- ``graph.evaluate(process_graph, arguments=..., hooks=..., node_hooks=..., resolver=...)``:
  evaluate a process graph (``resolver`` finds user-defined processes);
- ``tiling``: ``tiling_plan(graph)`` (halo, alignment, global nodes) and
  ``evaluate_tiled(graph, sources, tile_size=...)``, from each process's space declaration
  (``space``);
- ``registry``: ``implemented()``, ``get(process_id)``, ``specs()``, ``list_processes()``
  (``GET /processes``, our additions marked);
- ``inline``: ``dumps(value)`` (results as JSON) and ``load_inline_cube``;
- ``udf``: ``run_udf`` in a child process, ``udf_runtimes()`` (``GET /udf_runtimes``);
- ``specs.process_spec(process_id)``: the official spec JSON;
- families, imported on first use of the registry (not by this package): ``math``, ``logic``,
  ``reducers``, ``arrays``, ``ordering``, ``texts``, ``dates``, ``cube``, ``dimensions``,
  ``merge``, ``aggregate``, ``neighborhood``, ``resample``, ``vector``, ``indices``,
  ``inline``, ``udf``, ``curves``.
"""
