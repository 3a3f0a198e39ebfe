"""An installed cywhip, and the sdist and wheels it comes from, carry every source and declaration.

These checks need an install or built archives to look at, so they run only when asked:
CYWHIP_EXPECT_INSTALLED=1 says cywhip must come from an installed wheel, not from this checkout;
CYWHIP_DIST=<dir> names a directory holding the sdist and the wheels `python -m build` and
`auditwheel repair` made from this checkout. .ci/run sets both.
"""
import importlib
import os
import pathlib
import sys
import sysconfig
import tarfile
import zipfile

import pytest

import cywhip

CHECKOUT = pathlib.Path(__file__).resolve().parent.parent
SOURCE_PKG = CHECKOUT / "cywhip"
PKG = pathlib.Path(cywhip.__file__).resolve().parent
EXTENSIONS = sorted(p.stem for p in SOURCE_PKG.glob("*.pyx"))  # one compiled module per .pyx
# Compiled test scaffolding (the test model of the ring and the layout), a module of cywhip._testing.
TESTING_EXTENSIONS = sorted(p.stem for p in (SOURCE_PKG / "_testing").glob("*.pyx"))

expect_installed = pytest.mark.skipif(os.environ.get("CYWHIP_EXPECT_INSTALLED") != "1",
                                      reason="set CYWHIP_EXPECT_INSTALLED=1 to check an installed wheel")
dist_dir = os.environ.get("CYWHIP_DIST")
with_dist = pytest.mark.skipif(not dist_dir, reason="set CYWHIP_DIST to the directory of the built sdist and wheels")


def sources(*suffixes):
    """The checkout's files with these suffixes (or names), relative to the checkout."""
    return sorted(str(p.relative_to(CHECKOUT)) for p in SOURCE_PKG.rglob("*")
                  if (p.suffix in suffixes or p.name in suffixes) and "__pycache__" not in p.parts)


DECLARATIONS = (".pxd", ".h", ".pyi", "py.typed")


@expect_installed
def test_cywhip_is_imported_from_site_packages_and_not_from_the_checkout():
    site = {pathlib.Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    assert PKG.parent in site, (PKG, site)
    assert CHECKOUT not in PKG.parents
    assert CHECKOUT not in {pathlib.Path(p or ".").resolve() for p in sys.path}
    for name in EXTENSIONS:
        module = importlib.import_module(f"cywhip.{name}")
        assert pathlib.Path(module.__file__).resolve().parent == PKG, module.__file__


@expect_installed
def test_the_installed_package_holds_the_declarations_stubs_and_headers_of_the_checkout():
    wanted = sources(*DECLARATIONS)
    assert len(wanted) > 10
    for rel in wanted:
        installed = PKG.parent / rel
        assert installed.is_file(), rel
        assert installed.read_bytes() == (CHECKOUT / rel).read_bytes(), f"{rel} differs from the checkout"


@expect_installed
def test_get_include_names_the_installed_package_and_its_cython_api():
    include = pathlib.Path(cywhip.get_include()).resolve()
    assert include == PKG.parent
    for rel in ("cywhip/capi.pxd", "cywhip/capi.h", "cywhip/api.pxd", "cywhip/api.h"):
        assert (include / rel).read_bytes() == (CHECKOUT / rel).read_bytes(), rel


@expect_installed
def test_the_installed_package_holds_no_generated_c():
    assert not list(PKG.rglob("*.c"))


def dist_files(pattern):
    found = sorted(pathlib.Path(dist_dir).glob(pattern))
    assert found, f"nothing matches {pattern} in {dist_dir}"
    return found


@with_dist
def test_the_sdist_holds_every_source_and_no_generated_c():
    for sdist in dist_files("cywhip-*.tar.gz"):
        with tarfile.open(sdist) as tar:
            names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        wanted = sources(".py", ".pyx", ".pxi", *DECLARATIONS) + ["README.md", "pyproject.toml", "setup.py"]
        missing = [rel for rel in wanted if rel not in names]
        assert not missing, (sdist.name, missing)
        assert not [n for n in names if n.endswith((".c", ".so"))], sdist.name


@with_dist
def test_every_wheel_holds_the_compiled_modules_and_declarations_and_no_generated_c():
    for wheel in dist_files("**/cywhip-*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
        for name in EXTENSIONS:
            assert [n for n in names if n.startswith(f"cywhip/{name}.") and n.endswith(".so")], (wheel.name, name)
        for name in TESTING_EXTENSIONS:
            assert [n for n in names if n.startswith(f"cywhip/_testing/{name}.") and n.endswith(".so")], \
                (wheel.name, name)
        missing = [rel for rel in sources(*DECLARATIONS) + sources(".py") if rel not in names]
        assert not missing, (wheel.name, missing)
        assert not [n for n in names if n.endswith(".c")], wheel.name
