"""Pure detectors: plain floats in, events out. No torch, no I/O, no printing."""
