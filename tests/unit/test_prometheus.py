"""deploy/prometheus/: the scrape config and the alert rules pass Debian's promtool (``check`` and
``test rules``: the alerts fire when they should and not before), and every metric the rules and the
Grafana dashboard read is one a service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from prometheus_client import CollectorRegistry

from admin.api.app import create_app as admin_app
from admin.api.service import AdminApi
from hbdns import config, keys
from hbdns import metrics as prom
from hbdns.purge import Purger
from heartbeat_listener.metrics import _HELP, Metrics
from notifier.consumer import GROUP
from notifier.counters import Counters
from notifier.metrics import CountersCollector, NotifierMetrics, QueueCollector
from pdns_backend.metrics import BackendMetrics
from sweeper.mass_metrics import MassCollector
from sweeper.metrics import LivenessCollector, SweeperMetrics
from update_api.app import create_app as update_app
from update_api.service import UpdateService
from update_api.status.app import create_app as status_app
from update_api.status.service import StatusService

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
DEAD_SUMMARY = "Notifications failed for good in the last hour (hbdns notify dead-letters, then retry)"


def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.skip("promtool missing: Debian's package prometheus (make sysdeps installs it)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_checks_the_config_and_the_rules() -> None:
    out = run("check", "config", str(PROM / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout + out.stderr
    out = run("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _alert(at: str, name: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": name, "exp_alerts": list(alerts)}


def test_the_alerts_fire_when_they_should(tmp_path: Path) -> None:
    sweeper = {"job": "hbdns-sweeper", "instance": "s1"}
    notifier = {"job": "hbdns-notifier", "instance": "n1"}
    backend = {"job": "hbdns-backend", "instance": "b1"}
    cases = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _series("hbdns_sweep_lag_seconds", "0 5 5 30 30 30 30", **sweeper),
                    _series("up", "1 1 0 0 0 0 0", job="hbdns-listener", instance="l1"),
                    _series("hbdns_backend_redis_up", "1 0 0 0 0 0 0", **backend),
                    _series("hbdns_notifier_messages_total", "0+0x6 1 1", **notifier, channel="email", result="dead"),
                ],
                "alert_rule_test": [
                    _alert("2m", "HbdnsSweepLag"),  # 5 s: below the threshold
                    _alert("3m", "HbdnsSweepLag"),  # 30 s, but not for a minute yet
                    _alert(
                        "5m",
                        "HbdnsSweepLag",
                        {
                            "exp_labels": {"severity": "critical"},
                            "exp_annotations": {"summary": "Outages are recorded 30s late: no notifications meanwhile"},
                        },
                    ),
                    _alert("2m", "HbdnsIngestDown"),
                    _alert(
                        "4m",
                        "HbdnsIngestDown",
                        {
                            "exp_labels": {"severity": "critical"},
                            "exp_annotations": {
                                "summary": "No heartbeat listener is up: beats are lost and accounts go neutral"
                            },
                        },
                    ),
                    _alert(
                        "2m",
                        "HbdnsBackendRedisDown",
                        {
                            "exp_labels": {"severity": "critical", **backend},
                            "exp_annotations": {"summary": "Backend b1 cannot read Redis: PowerDNS answers SERVFAIL"},
                        },
                    ),
                    _alert("6m", "HbdnsDeadLetters"),
                    _alert(
                        "8m",
                        "HbdnsDeadLetters",
                        {
                            "exp_labels": {"severity": "warning"},
                            "exp_annotations": {"summary": DEAD_SUMMARY},
                        },
                    ),
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    _series("hbdns_notifier_messages_total", "0+10x40", **notifier, channel="email", result="queued"),
                    _series("hbdns_notifier_messages_total", "0+1x40", **notifier, channel="email", result="sent"),
                    _series("hbdns_notifier_messages_total", "0+10x40", **notifier, channel="sms", result="sent"),
                ],
                "alert_rule_test": [
                    _alert("10m", "HbdnsNotificationsFailing"),
                    _alert(
                        "35m",
                        "HbdnsNotificationsFailing",
                        {
                            "exp_labels": {"severity": "critical", "channel": "email"},
                            "exp_annotations": {"summary": "Most email notifications fail (relay or gateway down?)"},
                        },
                    ),
                ],
            },
        ],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(json.dumps(cases))  # JSON is YAML
    out = run("test", "rules", str(test_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def exported_names() -> set[str]:
    """Every sample name the services export, from their registries built here on fakeredis."""
    r = fakeredis.FakeRedis(decode_responses=True)
    r.xgroup_create(keys.events(0), GROUP, id="0", mkstream=True)
    for shard in keys.all_shards():  # a counted database (hbdns_accounts)
        r.hset(keys.stats(shard), "live", 0)
    settings = config.load({})
    purger = Purger([], "")
    registries: list[CollectorRegistry] = []

    def registry() -> CollectorRegistry:
        registries.append(prom.new_registry())
        return registries[-1]

    BackendMetrics(registry())
    reg = registry()
    SweeperMetrics(reg)
    reg.register(LivenessCollector(r))
    reg.register(MassCollector(r))
    prom.LoopErrors(reg, "hbdns_sweeper")
    reg = registry()
    NotifierMetrics(reg)
    reg.register(QueueCollector(r, GROUP))
    reg.register(CountersCollector(Counters()))
    prom.LoopErrors(reg, "hbdns_notifier")
    update_app(UpdateService(settings, r, purger), registry=registry())
    admin_app(AdminApi.build(settings, r, purger), registry=registry())
    status_app(StatusService(settings, r), registry=registry())
    Metrics().register(registry())
    names = {"up"} | set(_HELP)  # Prometheus' own; the listener's (some only with their sources)
    for reg in registries:
        for family in reg.collect():
            names.update(s.name for s in family.samples)
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
            else:
                names.add(family.name)
    return names


def _referenced(exprs: list[str]) -> set[str]:
    names: set[str] = set()
    for expr in exprs:
        expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
        names.update(n for n in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if n.startswith(("hbdns_", "process_")))
        if re.search(r"\bup\b", expr):
            names.add("up")
    return names


def test_the_rules_and_the_dashboard_read_only_exported_metrics() -> None:
    exported = exported_names()
    rules_text = RULES.read_text()
    rule_exprs = re.findall(r"expr: (?:>\n)?((?:.+\n)(?:          .+\n)*)", rules_text)
    assert len(rule_exprs) == rules_text.count("- alert:")
    dashboard = json.loads((PROM / "grafana-dashboard.json").read_text())
    dash_exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(dash_exprs) >= 20
    for where, exprs in (("alerts.yml", rule_exprs), ("grafana-dashboard.json", dash_exprs)):
        missing = _referenced(exprs) - exported
        assert not missing, f"{where} reads metrics no service exports: {sorted(missing)}"
    # the minimum is on the dashboard
    used = _referenced(dash_exprs)
    for name in (
        "hbdns_heartbeat_packets_total",
        "hbdns_backend_lookups_total",
        "hbdns_backend_lookup_seconds_bucket",
        "hbdns_sweeper_neutralized_total",
        "hbdns_sweep_lag_seconds",
        "hbdns_notifier_messages_total",
        "hbdns_notifier_queue_depth",
        "hbdns_notifier_queue_oldest_seconds",
        "hbdns_notifier_dead_letters",
        "hbdns_notifier_delivery_delay_seconds_bucket",
        "hbdns_update_answers_total",
        "hbdns_accounts",
    ):
        assert name in used, name


def test_the_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads((PROM / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"] == "hbdns"
    for p in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"])
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}"
