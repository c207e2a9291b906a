"""The reliability suite: hostile inputs, injected faults, and what was lost (must be 0).

Tests report through the ``tally`` fixture; the totals print at the end of the pytest run.
(A package, with __init__.py, so this conftest does not shadow tests/conftest.py's module name.)
"""
import pytest


class Tally:
    def __init__(self):
        self.hostile, self.faults, self.lost = 0, 0, 0
        # What a command refused to do to the user's files, and what was thrown at it while running.
        self.deletions, self.overwrites, self.code_files, self.concurrent, self.signals = 0, 0, 0, 0, 0

    def tried(self, n=1):
        """``n`` hostile inputs went through a command."""
        self.hostile += n

    def injected(self, n=1):
        """``n`` faults (kills, full disks, refused writes, dropped connections) were injected."""
        self.faults += n

    def refused_deletion(self, n=1):
        """``n`` attempts to make a command delete a folder it did not create were refused."""
        self.deletions += n

    def refused_overwrite(self, n=1):
        """``n`` attempts to make an output overwrite an input (or a model) were refused."""
        self.overwrites += n

    def refused_code(self, n=1):
        """``n`` model files that would run code were refused."""
        self.code_files += n

    def ran_concurrently(self, n=1):
        """``n`` commands were run against the same run folder or output file at once."""
        self.concurrent += n

    def sent_signal(self, n=1):
        """``n`` signals (SIGINT, SIGTERM, SIGKILL) were sent to a running command."""
        self.signals += n

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
            f"deletions refused: {TALLY.deletions}, overwrites refused: {TALLY.overwrites}, "
            f"code-running files refused: {TALLY.code_files}, concurrent runs tried: {TALLY.concurrent}, "
            f"signals sent: {TALLY.signals}, rows or files lost: {TALLY.lost}"
        )
