import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import helpers  # noqa: E402


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ANN201
    if helpers.WORST:
        terminalreporter.section("worst measured errors")
        for kind, value in sorted(helpers.WORST.items()):
            terminalreporter.write_line(f"{kind}: {value:.3e}")
