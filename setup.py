"""The one thing pyproject.toml cannot declare stably: the compiled part.

engine/experts/eval_filter.c (the router hook's eval callback, filtered in C) is plain C
loaded with ctypes, built as an extension module so that `pip install` compiles it with
the compiler llama-cpp-python's build needs anyway. (`[tool.setuptools] ext-modules` in
pyproject.toml is still experimental in setuptools.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: where it does not compile, the install goes on and the hook runs in Python
        Extension(
            "engine.experts._eval_filter", ["engine/experts/eval_filter.c"], extra_compile_args=["-O2"], optional=True
        ),
    ]
)
