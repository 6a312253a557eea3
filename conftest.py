"""Import order for every test session (tests/ and benchmarks/ share one process).

Triton, PyTorch's compiler backend, crashes the process with a segmentation fault when it is
imported after TensorFlow (seen with torch 2.14, triton 3.8, tensorflow 2.21): where it is
installed (the ``peers`` extra), it is imported first.
"""

import importlib.util

if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401
