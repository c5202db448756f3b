"""Build the optional C core of PDQ; the package works without it (NumPy fallback)."""

import sys

from setuptools import Extension, setup

# -ffp-contract=off keeps every multiply and add separately rounded, as in the
# reference build, so the bits stay identical even when built with -march=native.
compile_args = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=c99"]

setup(
    ext_modules=[
        Extension(
            "childshield.signals._pdqcore",
            ["src/childshield/signals/_pdqcore.c"],
            extra_compile_args=compile_args,
            optional=True,
        ),
        Extension(
            "childshield.index._mih",
            ["src/childshield/index/_mih.c"],
            extra_compile_args=compile_args,
            optional=True,
        ),
        Extension(
            "childshield.media._jpegdc",
            ["src/childshield/media/_jpegdc.c"],
            extra_compile_args=compile_args,
            optional=True,
        ),
    ]
)
