"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch


def test_readme_examples_run() -> None:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}
    torch.manual_seed(0)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["report"].ok(1e-6)  # type: ignore[attr-defined]
