"""The JSON examples of docs/rules.md and README.md are accepted by the rules API's intake, as written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from trigger_detector.domain import intake

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "rules.md"
BLOCKS = [block for path in (DOC, ROOT / "README.md")
          for block in re.findall(r"```json\n(.*?)```", path.read_text(), flags=re.DOTALL)]
TABLE_STEPS = re.findall(r"^\| `[a-z_]+` \| `(\{.*\})` \|$", DOC.read_text(), flags=re.MULTILINE)
BASE: dict[str, Any] = {"name": "doc example", "triggers": [{"kind": "event", "event_type": "x"}],
                        "actions": [{"type": "add_alert", "title": "t"}]}


def as_rule(example: dict[str, Any]) -> dict[str, Any]:
    """A whole rule, or a trigger / step / governance example placed in a minimal rule."""
    if "triggers" in example or "trigger_type" in example:
        return example
    if "kind" in example:
        return {**BASE, "triggers": [example]}
    if "type" in example:
        return {**BASE, "actions": [example]}
    if "risk_level" in example:
        return {**BASE, "governance": example}
    raise AssertionError(f"unrecognised example: {example}")


def test_the_document_has_examples() -> None:
    assert len(BLOCKS) >= 12 and len(TABLE_STEPS) == 14


@pytest.mark.parametrize("block", BLOCKS + TABLE_STEPS)
def test_every_example_is_accepted(block: str) -> None:
    intake.accept(as_rule(json.loads(block)))
