"""The agent's Prometheus metrics (four11_agent_*), every known label set created at start."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..core.errors import REASONS
from ..core.metrics import build_info

CHANNELS = ("multicast", "unicast")
# result -> the reasons that go with it
ALERT_RESULTS = {
    "accepted": ("none",),
    "ignored": ("duplicate", "other_groups"),
    "dropped": ("rate_limited",),
    "refused": ("bad_format", "too_large", "unknown_key", "expired", "bad_signature", "replay"),
}
SYNC_TRIGGERS = ("start", "alert", "watch", "poll", "retry", "reload")
SYNC_RESULTS = ("ok", "not_modified", "partial", "failed", "frozen")
POST_APPLY_RESULTS = ("ok", "failed", "timeout")
MAX_MASTER_LABELS = 16


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        r = registry
        self.clock = clock
        build_info(r, "agent")
        self.alerts = Counter("four11_agent_alerts_received_total",
                              "Alert datagrams received, by channel, result and reason",
                              ["channel", "result", "reason"], registry=r)
        # children looked up once: a flood calls these tens of thousands of times a second
        self._alerts = {(ch, res, why): self.alerts.labels(ch, res, why)
                        for ch in CHANNELS for res, reasons in ALERT_RESULTS.items() for why in reasons}
        self.verify_dropped = Counter("four11_agent_verify_budget_dropped_total",
                                      "Alerts not signature-checked because a budget was used up",
                                      ["scope"], registry=r)
        self._dropped = {s: self.verify_dropped.labels(s) for s in ("source", "global")}
        self.syncs = Counter("four11_agent_syncs_total", "Syncs with the masters, by trigger and result",
                             ["trigger", "result"], registry=r)
        for t in SYNC_TRIGGERS:
            for res in SYNC_RESULTS:
                self.syncs.labels(t, res)
        self.fetch_seconds = Histogram(
            "four11_agent_fetch_duration_seconds", "Time to fetch, verify and apply one sync",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)
        self.files = Counter("four11_agent_files_total", "Messages applied or refused, by reason",
                             ["result", "reason"], registry=r)
        self.files.labels("applied", "none")
        for why in REASONS:
            self.files.labels("refused", why)
        self.index_refused = Counter("four11_agent_index_refused_total",
                                     "Index answers refused, by reason", ["reason"], registry=r)
        for why in REASONS:
            self.index_refused.labels(why)
        self.index_version = Gauge("four11_agent_index_version", "Highest index version accepted",
                                   registry=r)
        self.applied_version = Gauge("four11_agent_applied_index_version",
                                     "Index version whose messages are all applied", registry=r)
        self.last_sync = Gauge("four11_agent_last_sync_timestamp_seconds",
                               "Time of the last successful sync", registry=r)
        self.index_expires = Gauge("four11_agent_index_expires_timestamp_seconds",
                                   "Expiry of the applied index", registry=r)
        self.frozen = Gauge("four11_agent_index_expired",
                            "1 while the masters only offer an expired index (files are kept)",
                            registry=r)
        self.applied_created = 0.0
        lag = Gauge("four11_agent_convergence_lag_seconds",
                    "Seconds since the applied index was published", registry=r)
        lag.set_function(lambda: max(0.0, self.clock() - self.applied_created)
                         if self.applied_created else 0.0)
        self.master_score = Gauge("four11_agent_master_score",
                                  "Score of each master (-3..+3), by position in the master list",
                                  ["master"], registry=r)
        self.masters_learned = Counter("four11_agent_masters_learned_total",
                                       "Masters learned from verified alerts", registry=r)
        self.nodes = Gauge("four11_agent_cluster_nodes_estimate",
                           "Cluster size the fileserver reported (N in the backoff)", registry=r)
        self.backoff = Gauge("four11_agent_backoff_window_seconds",
                             "Current backoff window W = N * t / C", registry=r)
        self.fetch_ewma = Gauge("four11_agent_fetch_time_ewma_seconds",
                                "Time a sync spends fetching from the master (moving average): "
                                "t in the backoff",
                                registry=r)
        self.post_apply = Counter("four11_agent_post_apply_total", "post_apply commands run, by result",
                                  ["result"], registry=r)
        for res in POST_APPLY_RESULTS:
            self.post_apply.labels(res)
        self.watch_errors = Counter("four11_agent_watch_errors_total",
                                    "Long-poll watch requests that failed", registry=r)
        self.reloads = Counter("four11_agent_config_reloads_total", "SIGHUP reloads, by result",
                               ["result"], registry=r)
        for res in ("ok", "failed"):
            self.reloads.labels(res)
        self.state_rebuilt = Counter("four11_agent_state_rebuilt_total",
                                     "Corrupt state files set aside and rebuilt by a full sync",
                                     registry=r)

    def alert(self, channel: str, result: str, reason: str) -> None:
        c = self._alerts.get((channel, result, reason))
        (c if c is not None else self.alerts.labels(channel, result, reason)).inc()

    def dropped(self, scope: str) -> None:
        self._dropped[scope].inc()

    def set_scores(self, scores: list[int]) -> None:
        for i, s in enumerate(scores[:MAX_MASTER_LABELS]):
            self.master_score.labels(str(i)).set(s)
