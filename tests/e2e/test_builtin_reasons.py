"""Each built-in policy's rules, as README's "What each built-in is for" describes them,
show in the journal of `hashpivot run --mode dry-run` as the reason codes of its changes:
three days of the mixed site (ASICs and GPUs under one cap), one run per policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.framework import REASON_TEXT, Reason
from orchestrator.framework.reasons import is_guard_reason
from orchestrator.runtime.journal import read_journal
from tests.e2e.test_one_decision_path import dry_run, site_file

R = Reason
#: The rules each built-in applies (every one seen over these three days), and nothing
#: else a policy sets: the guards' reasons may come on top.
RULES = {
    # every node takes its best mode
    "greedy": {R.HIGHER_VALUE, R.NOT_PROFITABLE},
    # rises persist before a switch; falls and waiting AI jobs act at once
    "hysteresis": {R.RISE_CONFIRMED, R.FALL_IMMEDIATE, R.AI_DEMAND_WAITING},
    # fills the cap by value per watt, the least efficient curtailed first
    "power-capped": {R.CAP_FILL_BY_VALUE_PER_WATT, R.CAP_CURTAILED_BY_POLICY,
                     R.NOT_PROFITABLE},
    # switches only when the move pays back over its horizon
    "lookahead": {R.PAYS_BACK_IN_HORIZON},
    # plans the whole site over the next hours, its cap included
    "receding-horizon": {R.PAYS_BACK_IN_HORIZON, R.CAP_CURTAILED_BY_POLICY},
}


@pytest.mark.parametrize("policy", sorted(RULES))
def test_each_built_in_explains_its_changes_by_its_own_rules(policy: str,
                                                             tmp_path: Path) -> None:
    config = site_file(tmp_path, "mixed-site", policy={"name": policy, "params": {}})
    journal, _ = dry_run(config, tmp_path, "2024-08-01T00:00:00Z", "2024-08-04T00:00:00Z")
    records = list(read_journal(journal))
    assert len(records) == 72
    changes = [change for record in records for change in record.changes]
    for change in changes:  # the code and its words agree
        assert REASON_TEXT[Reason(change.reason_code)] == change.reason
    by_policy = {Reason(c.reason_code) for c in changes if not is_guard_reason(c.reason_code)}
    assert by_policy == RULES[policy]
