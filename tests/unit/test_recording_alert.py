"""The recording alerts under promtool's rule tests: storage failures fire after 5 minutes
and name the site and reason; a backlog at a site fires after 15 minutes; quiet otherwise."""

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
                # dhaka's central storage full from minute 0: a failure every minute
                {"series": 'ccbridge_recordings_failed_total{site="dhaka", reason="storage"}',
                 "values": "0+1x30"},
                {"series": 'ccbridge_recordings_failed_total{site="bangalore", reason="storage"}',
                 "values": "0x30"},
                {"series": 'ccbridge_recordings_pending{site="dhaka"}', "values": "0+5x30"},
                {"series": 'ccbridge_recordings_pending{site="bangalore"}', "values": "2x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "CcbridgeRecordingsNotStored", "exp_alerts": []},
                {
                    "eval_time": "10m",
                    "alertname": "CcbridgeRecordingsNotStored",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "critical", "site": "dhaka",
                                           "reason": "storage"},
                            "exp_annotations": {
                                "summary": "recordings from dhaka are not being stored "
                                "(storage): the site keeps them"
                            },
                        }
                    ],
                },
                {"eval_time": "20m", "alertname": "CcbridgeRecordingsPiling", "exp_alerts": []},
                {
                    "eval_time": "28m",
                    "alertname": "CcbridgeRecordingsPiling",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "warning", "site": "dhaka"},
                            "exp_annotations": {
                                "summary": "140 recordings waiting at dhaka to reach "
                                "central storage"
                            },
                        }
                    ],
                },
            ],
        }
    ],
}  # fmt: skip


def test_recording_alerts_fire_on_failures_and_backlogs(tmp_path: Path) -> None:
    check_rule_case(CASE, tmp_path)
