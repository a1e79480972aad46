"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch


def test_readme_examples_run() -> None:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    checked = 0
    for k, block in enumerate(blocks):
        namespace: dict[str, object] = {}  # every example runs on its own, as a reader pastes it
        torch.manual_seed(0)
        exec(compile(block, f"README.md python example {k + 1}", "exec"), namespace)
        if "report" in namespace:
            assert namespace["report"].ok(1e-6)  # type: ignore[attr-defined]
            checked += 1
    assert checked == 1  # the gradcheck example
