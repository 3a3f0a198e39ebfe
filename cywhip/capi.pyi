"""cywhip's Cython API, for other extensions' nogil code: ``from cywhip cimport api``.

It has nothing to call from Python; see cywhip/api.pxd and docs/api.md.
"""
