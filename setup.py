"""The one thing pyproject.toml cannot declare stably: the compiled part.

engine/experts/eval_filter.c (the router hook's eval callback, filtered in C) and
engine/experts/map_queue.c (the direct reads' system calls, made by a thread of their own)
are plain C loaded with ctypes, built as extension modules so that `pip install` compiles
them with the compiler llama-cpp-python's build needs anyway. (`[tool.setuptools] ext-modules` in
pyproject.toml is still experimental in setuptools.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: where it does not compile, the install goes on and the hook runs in Python
        Extension(
            "engine.experts._eval_filter", ["engine/experts/eval_filter.c"], extra_compile_args=["-O2"], optional=True
        ),
        Extension(
            "engine.experts._map_queue",
            ["engine/experts/map_queue.c"],
            extra_compile_args=["-O2"],
            libraries=["pthread"],
            optional=True,
        ),
    ]
)
