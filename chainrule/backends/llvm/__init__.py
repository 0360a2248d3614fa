"""The LLVM backend: a scheduled graph becomes one native function, called once per call.

- ``lower.py`` plans it (views, loops, reductions, BLAS calls, NumPy fallbacks, the arena), asking
  ``strategies.py`` how each op is computed (one registry keyed by the op: a strided view from
  ``views.py``, a reduction, BLAS gemm, LAPACK (``lapack_ops.py``), a loop nest of its own
  (``native_ops.py``: scans, argmax/argmin, concatenate), the NumPy fallback; elementwise ops run
  in loops);
- ``codegen.py`` writes the LLVM IR text (``irtext.py``; ``reductions.py`` for reductions over some
  axes, ``parallel.py`` for threads, whose tasks run on ``pool.py``'s workers); ``scalar_ops.py`` lowers each elementwise primitive, by an
  emitter registered for the op, its libm function, or its SymPy definition (``composed.py``);
  ``loops.py`` (with ``loop_steps.py``) writes scan, fori_loop, while_loop and switch nodes as
  native loops calling their bodies, and ``loop_scatter.py`` a scatter_add at a basic index;
- ``engine.py`` compiles IR text for the host CPU (disk cache in ``cache.py``, vector math
  in ``mathlib.py``, BLAS in ``blas.py``, LAPACK in ``lapack.py``);
- ``kernel.py`` wraps the result for Python: ``compile_graph(graph) -> LlvmKernel``, and
  ``set_num_threads(n)`` for the threads large loops use (``thread_choice.py`` times a kernel's
  first calls to confirm a count above one).

Select it with ``backend="llvm"`` on ``cr.grad``, ``cr.value_and_grad`` and ``cr.jit``.
"""
