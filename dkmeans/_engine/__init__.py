"""Everything that knows about chunks and dask: kernels, reductions, the pass engine
(graph, parallel), seeding, Lloyd, the fit driver, checkpoints, validation, config.

Private: the public API (``dkmeans.*``) validates at the door and makes one call in.
"""
