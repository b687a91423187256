"""The GIMP 3 plug-in's logic, free of GIMP: arguments, progress text, the daemon link, naming
and PNG encoding. `plugin.py` is the thin layer that talks to GIMP; it alone imports `gi`.

Runs in GIMP's own Python (3.9 and later, the standard library and pyzmq only)."""
