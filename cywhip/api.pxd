# cython: language_level=3
"""The Cython API's former name, kept for one release: ``from cywhip cimport api`` compiles as
before and calls the same functions.  New code cimports ``cywhip.capi``, where the natural
spelling ``cdef capi.Handle *h`` parses (``cdef api.Handle`` never did: ``api`` is a keyword
after ``cdef``).  See docs/api.md.
"""
from cywhip.capi cimport *
