"""Private: the native BPG library (``libnpp_bpg``, built from ``native/`` by ``setup.py``)
and its ctypes binding in :mod:`.binding`."""
