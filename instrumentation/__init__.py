"""Helpers services use to emit flow spans (node, state, call and provenance semantics).

Empty until the instrumentation issue lands; the package exists so the layout is the
one DESIGN.md draws and installs map it into the ``tracetables`` namespace.
"""
