"""The understaffing alert under promtool's rule tests: it fires after 15 minutes short of
the requirement, stays quiet when staffed enough, and names the site and queue."""

from __future__ import annotations

from pathlib import Path

from tests.promtool import check_rule_case

RULES = Path(__file__).resolve().parents[2] / "docker" / "prometheus" / "rules.yml"

CASE = {
    "rule_files": [str(RULES)],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                # dhaka's Bengali orders: 5 needed, 2 logged in for 30 minutes
                {"series": 'ccbridge_agents_required{site="dhaka", queue="orders-bn"}',
                 "values": "5x30"},
                {"series": 'ccbridge_agents_staffed{site="dhaka", queue="orders-bn"}',
                 "values": "2x30"},
                # bangalore's English orders: 3 needed, 4 logged in
                {"series": 'ccbridge_agents_required{site="bangalore", queue="orders-en"}',
                 "values": "3x30"},
                {"series": 'ccbridge_agents_staffed{site="bangalore", queue="orders-en"}',
                 "values": "4x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "CcbridgeUnderstaffed", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "CcbridgeUnderstaffed",
                    "exp_alerts": [
                        {
                            "exp_labels": {
                                "severity": "warning",
                                "site": "dhaka",
                                "queue": "orders-bn",
                            },
                            "exp_annotations": {
                                "summary": "orders-bn at dhaka is 3 agents short of its "
                                "forecast requirement"
                            },
                        }
                    ],
                },
            ],
            "promql_expr_test": [
                {
                    "expr": "ccbridge:agents_short",
                    "eval_time": "5m",
                    "exp_samples": [
                        {"labels": 'ccbridge:agents_short{site="bangalore", queue="orders-en"}',
                         "value": -1},
                        {"labels": 'ccbridge:agents_short{site="dhaka", queue="orders-bn"}',
                         "value": 3},
                    ],
                }
            ],
        }
    ],
}  # fmt: skip


def test_understaffing_fires_after_fifteen_minutes_short(tmp_path: Path) -> None:
    check_rule_case(CASE, tmp_path)
