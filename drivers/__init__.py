"""Badge readers behind one small interface (see drivers.base)."""
