"""Slow, obviously correct numpy twins of the numba kernels (and of multi-pass algorithms), one module per
room: ``twin_<room>.py``. Tests compare each kernel with its twin on random inputs."""
