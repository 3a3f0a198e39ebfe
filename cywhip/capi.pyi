"""cywhip's Cython API, for other extensions' nogil code: ``from cywhip cimport capi``.

It has nothing to call from Python; see cywhip/capi.pxd and docs/api.md.
"""
