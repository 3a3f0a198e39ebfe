"""The type stubs describe what the compiled modules really export."""
import ast
import importlib
import pathlib

import cywhip
from cywhip import _channel, _codec, _end

PKG = pathlib.Path(cywhip.__file__).resolve().parent
# Every stub beside the modules it describes (cywhip/X.pyi for cywhip.X).
ALL_STUBS = sorted(p.name for p in PKG.glob("*.pyi"))


def stub_names(stub):
    """{class or function name: set of member names} from a .pyi file."""
    tree = ast.parse((PKG / stub).read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for n in node.body:
                if isinstance(n, ast.FunctionDef):
                    members.add(n.name)
                elif isinstance(n, ast.AnnAssign):
                    members.add(n.target.id)
            out[node.name] = members
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = set()
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = set()
    return out


STUBS = {"_channel.pyi": _channel, "_codec.pyi": _codec, "_end.pyi": _end}


def all_stubs():
    out = {}
    for stub in STUBS:
        out.update(stub_names(stub))
    return out


def test_every_name_in_every_stub_exists_at_run_time():
    assert len(ALL_STUBS) >= 8, ALL_STUBS
    for stub in ALL_STUBS:
        module = importlib.import_module(f"cywhip.{stub[:-len('.pyi')]}")
        for name, members in stub_names(stub).items():
            assert hasattr(module, name), (stub, name)
            obj = getattr(module, name)
            missing = [m for m in members if not hasattr(obj, m)]
            assert not missing, (stub, name, missing)


def test_every_public_method_of_the_ends_is_in_the_stubs():
    stubs = all_stubs()
    for cls in (cywhip.Sender, cywhip.Receiver, cywhip.WriteBuffer, cywhip.ReadBuffer):
        documented = stubs[cls.__name__] | stubs.get("_End", set())
        public = {m for m in dir(cls) if not m.startswith("_")}
        assert public <= documented, (cls.__name__, sorted(public - documented))


def test_the_package_ships_its_stubs_and_py_typed():
    assert (PKG / "py.typed").exists()
    for stub in ALL_STUBS:
        assert (PKG / stub).exists(), stub
