"""How fashion's threads share the CPU with each other and with whatever else the machine runs.

torch runs its intra-op work on an OpenMP pool (GNU libgomp in the Linux wheels). By default a
thread that reaches the end of a parallel region spins, waiting for the others; when another
process holds one of the cores, the thread it displaced finishes a time slice late and the
spinning one burns the core the late one needs: on 2 cores with one competing busy loop, the
forward pass of EfficientNet-Lite0 fell to under half its 1-thread speed (BENCHMARKS.md).
``passive_openmp`` makes the pool's threads sleep at once instead; libgomp reads the setting when
it loads, so it is set when fashioncli is imported, before anything imports torch.

``background_thread`` is the initializer of predict's decoding threads: they run at the lowest
priority, on the time the model's threads leave idle, never taking a core from them.
"""
import os
import sys
import threading

WAIT_POLICY = "OMP_WAIT_POLICY"
LOWEST_PRIORITY = 19  # nice value


def passive_openmp(environ=os.environ):
    """Ask OpenMP (loaded later, with torch) to put waiting threads to sleep -> whether it will apply.

    A value the user set is kept, and once torch is loaded the setting can no longer change anything.
    """
    if "torch" in sys.modules:
        return environ.get(WAIT_POLICY, "").upper() == "PASSIVE"
    environ.setdefault(WAIT_POLICY, "PASSIVE")
    return environ[WAIT_POLICY].upper() == "PASSIVE"


def background_thread():
    """Lower the calling thread (not the process) to the lowest priority; where threads have no
    priority of their own (off Linux), do nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:  # Linux: a thread id names one thread for setpriority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
    except (AttributeError, OSError):
        pass


def thread_priority():
    """The calling thread's nice value (Linux; the process's elsewhere)."""
    who = threading.get_native_id() if sys.platform.startswith("linux") else 0
    return os.getpriority(os.PRIO_PROCESS, who)
