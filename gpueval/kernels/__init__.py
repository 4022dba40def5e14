"""Per-chunk kernels. Each public function takes NumPy or CuPy chunks and dispatches on the
chunk's type: the CPU twin is NumPy/Numba (or cc3d/edt), the GPU twin is CuPy (or cuCIM /
raw CUDA from the top-level ``kernels/`` folder). Both return small host-side statistics."""
