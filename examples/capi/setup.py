# examples/capi/setup.py
import cywhip
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(ext_modules=cythonize(
    [Extension(name, [f"{name}.pyx"], include_dirs=[cywhip.get_include()])
     for name in ("producer", "consumer")],
    include_path=[cywhip.get_include()]))
