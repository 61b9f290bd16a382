"""The one compiled part: ``qldb_migrate._native`` (migrate/_native.c), built when a C compiler and
OpenSSL's headers are there.  Without it every path still works, in pure Python, more slowly."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "qldb_migrate._native",
            ["migrate/_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
            optional=True,
        )
    ]
)
