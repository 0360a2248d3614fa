"""The LLVM backend: a scheduled graph becomes one native function, called once per call.

- ``lower.py`` plans it (views, loops, reductions, BLAS calls, NumPy fallbacks, the arena)
  and ``codegen.py`` writes the LLVM IR text (``irtext.py``; ``scalar_ops.py`` lowers
  each elementwise primitive);
- ``engine.py`` compiles IR text for the host CPU (disk cache in ``cache.py``, vector math
  in ``mathlib.py``, BLAS in ``blas.py``);
- ``kernel.py`` wraps the result for Python: ``compile_graph(graph) -> LlvmKernel``, and
  ``set_num_threads(n)`` for the threads large loops use.

Select it with ``backend="llvm"`` on ``cr.grad``, ``cr.value_and_grad`` and ``cr.jit``.
"""
