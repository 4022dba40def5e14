"""gpueval — score segmentation challenge submissions out of core, on the GPU or the CPU.

Layers (each score can be followed from top to bottom):

* :mod:`gpueval.io`         open, validate and align arrays lazily (dask), safe archives
* :mod:`gpueval.kernels`    per-chunk statistics, one CPU (NumPy/Numba) and one GPU (CuPy) twin
* :mod:`gpueval.engine`     chunked map → exact tree reduction over a dask graph
* :mod:`gpueval.metrics`    pure formulas on reduced statistics (no arrays of voxels)
* :mod:`gpueval.challenges` one module per challenge, composing the above from ``configs/``
* :mod:`gpueval.cli`        the command-line contract of ``shared/specs/cli.md``
"""

__version__ = "0.1.0"
