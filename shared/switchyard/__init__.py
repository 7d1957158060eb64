"""Switchyard's runtime library: everything every Lambda bundles (as a layer).

Dependencies point inward: handlers in ``functions/`` call this library; the library talks to the
outside world only through the adapters in ``switchyard.aws`` and ``switchyard.connectors``.
The library never reads the process environment: handlers pass typed settings in.
"""
