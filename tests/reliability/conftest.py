"""The reliability suite: hostile inputs, injected faults, and what was lost (must be 0).

Tests report through the ``tally`` fixture; the totals print at the end of the pytest run.
(A package, with __init__.py, so this conftest does not shadow tests/conftest.py's module name.)
"""
import pytest


class Tally:
    def __init__(self):
        self.hostile, self.faults, self.lost = 0, 0, 0

    def tried(self, n=1):
        """``n`` hostile inputs went through a command."""
        self.hostile += n

    def injected(self, n=1):
        """``n`` faults (kills, full disks, refused writes, dropped connections) were injected."""
        self.faults += n

    def count_lost(self, n):
        """Rows or files an operation lost (the test asserts it is 0 after recording it)."""
        self.lost += n
        return n


TALLY = Tally()


@pytest.fixture
def tally():
    return TALLY


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread; two would also fight the killed runs' processes."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_terminal_summary(terminalreporter):
    if TALLY.hostile or TALLY.faults:
        terminalreporter.write_sep("-", "reliability")
        terminalreporter.write_line(
            f"hostile inputs tried: {TALLY.hostile}, faults injected: {TALLY.faults}, "
            f"rows or files lost: {TALLY.lost}"
        )
