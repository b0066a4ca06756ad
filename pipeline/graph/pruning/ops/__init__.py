"""Op handlers: one module per op family, each owning its ops' coupling, surgery fix-ups,
lossless constant propagation and MAC count (the interface is ``base.OpHandler``).

``base`` imports no handler module; each handler module imports ``base`` and exports
``HANDLERS`` (its ``(op_type, handler)`` pairs); ``..registry`` imports the handler modules
and builds the default registry from those static lists. This package initialiser imports
nothing, so any one module here can be imported on its own.
"""
