"""The compiled modules and their directives; the project itself is described in pyproject.toml."""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Both steps use every core: Cython translates the modules in parallel, the compiler builds them
# in parallel (unless build_ext is given --parallel).
JOBS = os.cpu_count() or 1

# CYWHIP_DEBUG=1 builds with assertions, line tracing and AddressSanitizer/UBSan.
DEBUG = os.environ.get("CYWHIP_DEBUG") == "1"

compile_args = ["-O3", "-std=gnu11"]
link_args = []
macros = []
directives = {"language_level": "3", "embedsignature": True}
if DEBUG:
    compile_args = ["-O1", "-g", "-std=gnu11", "-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    link_args = ["-fsanitize=address,undefined"]
    macros = [("CYTHON_TRACE_NOGIL", "1")]
    directives.update(linetrace=True, boundscheck=True, wraparound=True)
else:
    macros = [("NDEBUG", "1")]


def ext(name):
    return Extension(
        f"cywhip.{name}",
        [f"cywhip/{name.replace('.', '/')}.pyx"],
        # "." for cywhip/capi.h, the public header, included by that name as users' modules do.
        include_dirs=["cywhip/includes", "."],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=macros,
        # A change to a C helper rebuilds every module (they inline them).
        depends=sorted(glob.glob("cywhip/includes/*.h")) + ["cywhip/capi.h"]
        + (sorted(glob.glob("cywhip/ring/*.pxi")) if name == "_ring" else []),
    )


def _is_gcc(compiler):
    """Whether the C compiler distutils will run is GCC (not clang posing as cc)."""
    import subprocess
    try:
        out = subprocess.run([compiler.compiler_so[0], "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, IndexError, AttributeError, subprocess.SubprocessError):
        return False
    return "Free Software Foundation" in out and "clang" not in out


class parallel_build_ext(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = JOBS

    def build_extensions(self):
        # GCC stops inlining into a module once it has grown by inline-unit-growth percent; the
        # ends' calls inline their guard, the ring's steps and the publish into every call, and
        # channel's many calls reach that limit. A larger budget keeps each call one function.
        if not DEBUG and _is_gcc(self.compiler):
            for e in self.extensions:
                e.extra_compile_args = e.extra_compile_args + ["--param=inline-unit-growth=200"]
        super().build_extensions()


setup(
    cmdclass={"build_ext": parallel_build_ext},
    ext_modules=cythonize(
        [ext("_region"), ext("_admin"), ext("_ring"), ext("_codec"), ext("_end"), ext("_channel"), ext("_async"),
         ext("capi"), ext("_testing._model"),
         # The benchmarks' raw C floors: built with the package (the bench and asv run without a
         # compiler), imported only by cywhip._bench.
         ext("_bench._floor"),
         # Test machinery that needs the ends' C fields, for the programs tests start.
         ext("_testing._steps")],
        compiler_directives=directives,
        include_path=["."],
        nthreads=JOBS,
    ),
)
