from __future__ import annotations

import resource
import subprocess
import sys

CHILD = """
import resource
from gorun.limits import raise_nofile_limit
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
print(raise_nofile_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_soft_open_files_limit_is_lifted_to_the_hard_one() -> None:
    # In a child process: the test process's own limits stay as they are.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True).stdout.split()
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert [int(x) for x in out] == [expected, expected]


def test_a_limit_already_at_the_hard_one_is_left_alone() -> None:
    code = ("import resource\nfrom gorun.limits import raise_nofile_limit\n"
            "s, h = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))\n"
            "after = raise_nofile_limit()\n"
            "print(after == h, resource.getrlimit(resource.RLIMIT_NOFILE) == (h, h))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True"]
