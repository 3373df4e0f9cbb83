"""The issue's performance targets, checked against a run's medians."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.results import ScenarioResult

MET, MISSED = "met", "MISSED"


@dataclass(frozen=True, slots=True)
class TargetCheck:
    name: str
    measured: float | None
    required: str
    status: str
    unit: str = "x"

    @property
    def measured_text(self) -> str:
        if self.measured is None:
            return "-"
        if self.unit == "x":
            return f"{self.measured:.2f}x"
        return f"{self.measured:,.1f} {self.unit}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.measured,
            "unit": self.unit,
            "required": self.required,
            "status": self.status,
        }


def _not_measured(result: ScenarioResult | None, *subjects: tuple[str, str]) -> str:
    if result is None:
        return "not run"
    if result.skipped is not None:
        return f"not measured: {result.skipped}"
    for subject, phase in subjects:
        run = result.run(subject, phase)
        if run is None:
            return f"not measured: no {subject}"
        if run.skipped is not None:
            return f"not measured: {subject} skipped"
        if not run.rounds:
            return f"not measured: {subject} failed"
    return "not measured"


def ratio_check(
    name: str,
    result: ScenarioResult | None,
    key: str,
    subject: str,
    baseline: str,
    *,
    phase: str = "",
    at_least: float | None = None,
    at_most: float | None = None,
) -> TargetCheck:
    required = f">= {at_least:g}x" if at_least is not None else f"<= {at_most:g}x"
    value = base = None
    if result is not None:
        value = result.median(subject, key, phase)
        base = result.median(baseline, key, phase)
    if value is None or base is None or base <= 0:
        reason = _not_measured(result, (subject, phase), (baseline, phase))
        return TargetCheck(name, None, required, reason)
    measured = value / base
    ok = (at_least is None or measured >= at_least) and (at_most is None or measured <= at_most)
    return TargetCheck(name, measured, required, MET if ok else MISSED)


def check_targets(results: list[ScenarioResult], subscribers: int, idle: int) -> list[TargetCheck]:
    by_name = {r.name: r for r in results}
    fanout, rpc = by_name.get("fanout"), by_name.get("rpc")
    idle_result, redis = by_name.get("idle"), by_name.get("redis")
    n_note = "" if subscribers == 100 else f" (N={subscribers}; target is for N=100)"
    checks = [
        ratio_check(
            "fanout: syncwire-ws / raw-websockets",
            fanout,
            "delivered_per_s",
            "syncwire-ws",
            "raw-websockets",
            phase="max",
            at_least=1.3,
        ),
        ratio_check(
            "fanout: syncwire-grpc / raw-grpc",
            fanout,
            "delivered_per_s",
            "syncwire-grpc",
            "raw-grpc",
            phase="max",
            at_least=0.8,
        ),
        ratio_check(
            "fanout: legacy-json / raw-websockets",
            fanout,
            "delivered_per_s",
            "legacy-json",
            "raw-websockets",
            phase="max",
            at_least=0.9,
        ),
        ratio_check(
            "fanout: syncwire-ws / python-socketio",
            fanout,
            "delivered_per_s",
            "syncwire-ws",
            "python-socketio",
            phase="max",
            at_least=3.0,
        ),
    ]
    for subject, baseline in (
        ("syncwire-ws", "raw-websockets"),
        ("syncwire-grpc", "raw-grpc"),
        ("legacy-json", "raw-websockets"),
    ):
        checks.append(
            ratio_check(
                f"latency p99 at half rate: {subject} / {baseline}{n_note}",
                fanout,
                "p99_ms",
                subject,
                baseline,
                phase="half-rate",
                at_most=1.25,
            )
        )
    for subject in ("syncwire-ws", "legacy-json"):
        checks.append(
            ratio_check(
                f"server CPU per delivery at half rate: {subject} / raw-websockets{n_note}",
                fanout,
                "server_us_per_msg",
                subject,
                "raw-websockets",
                phase="half-rate",
                at_most=1.2,
            )
        )
    checks += [
        ratio_check(
            "rpc: server CPU per call, syncwire-ws Publish / raw-websockets echo",
            rpc,
            "server_us_per_call",
            "syncwire-ws",
            "raw-websockets",
            at_most=2.0,
        ),
        ratio_check(
            "rpc: syncwire-grpc Publish / raw-grpc echo",
            rpc,
            "calls_per_s",
            "syncwire-grpc",
            "raw-grpc",
            at_least=0.8,
        ),
        ratio_check(
            "rpc: syncwire-ws Publish / raw-websockets echo",
            rpc,
            "calls_per_s",
            "syncwire-ws",
            "raw-websockets",
            at_least=0.8,
        ),
    ]
    checks += _idle_checks(idle_result, idle)
    checks.append(_translate_check(by_name.get("translate")))
    checks += _catchup_checks(by_name.get("catchup"), fanout, subscribers)
    checks += _redis_checks(redis)
    web = by_name.get("web")
    for phase, key in (("unary", "calls/s"), ("fanout", "deliveries/s")):
        checks.append(
            ratio_check(
                f"web {phase} {key}: web-node / python-ws",
                web,
                "per_s",
                "web-node",
                "python-ws",
                phase=phase,
                at_least=0.9,
            )
        )
    return checks


def _idle_checks(result: ScenarioResult | None, idle: int) -> list[TargetCheck]:
    value = result.median("syncwire-ws", "kib_per_conn") if result is not None else None
    status = _not_measured(result, ("syncwire-ws", "")) if value is None else (
        MET if value <= 24 else MISSED
    )
    checks = [
        TargetCheck(
            "idle: server RSS per syncwire-ws connection", value, "<= 24 KiB", status, unit="KiB"
        ),
        ratio_check(
            "idle: RSS per connection with deflate, syncwire-ws / raw-websockets",
            result,
            "kib_per_conn",
            "syncwire-ws+deflate",
            "raw-websockets+deflate",
            at_most=1.1,
        ),
    ]
    held = None
    if result is not None:
        values = [
            v
            for s in ("syncwire-ws", "syncwire-grpc")
            if (v := result.median(s, "held")) is not None
        ]
        held = min(values) if values else None
    if held is None:
        status = _not_measured(result, ("syncwire-ws", ""))
    elif idle < 10_000:
        status = f"not measured: run with --idle 10000 (this run: {idle})"
    else:
        status = MET if held >= 10_000 else MISSED
    checks.append(
        TargetCheck(
            "idle: connections held by one syncwire process",
            held,
            ">= 10,000",
            status,
            unit="conns",
        )
    )
    return checks


def _catchup_checks(
    result: ScenarioResult | None, fanout: ScenarioResult | None, subscribers: int
) -> list[TargetCheck]:
    """Every subscriber recovers uncut; replay deliveries/s >= 0.8x the subject's live
    max-rate fan-out (fanout scenario, same run)."""
    checks = []
    for subject in ("syncwire-ws", "syncwire-grpc"):
        run = result.run(subject) if result is not None else None
        if run is None or not run.rounds:
            status = _not_measured(result, (subject, ""))
            checks.append(TargetCheck(f"catch-up: {subject} cut", None, "0", status, unit="subs"))
        else:
            cut = sum(r["cut"] + subscribers - r["completed"] for r in run.rounds)
            checks.append(
                TargetCheck(
                    f"catch-up: {subject} subscribers cut or short",
                    cut,
                    "0",
                    MET if cut == 0 else MISSED,
                    unit="subs",
                )
            )
        replay = result.median(subject, "replayed_per_s") if result is not None else None
        live = fanout.median(subject, "delivered_per_s", "max") if fanout is not None else None
        name = f"catch-up: {subject} replay / live max-rate fan-out deliveries/s"
        if replay is None or live is None or live <= 0:
            why = _not_measured(result, (subject, "")) if replay is None else "not measured: no fanout"
            checks.append(TargetCheck(name, None, ">= 0.8x", why))
        else:
            ratio = replay / live
            checks.append(TargetCheck(name, ratio, ">= 0.8x", MET if ratio >= 0.8 else MISSED))
    return checks


def _translate_check(result: ScenarioResult | None) -> TargetCheck:
    case = "legacy wrapper -> typed"
    value = result.median(case, "us_per_op") if result is not None else None
    status = _not_measured(result, (case, "")) if value is None else (
        MET if value <= 15 else MISSED
    )
    return TargetCheck(f"translate: {case}", value, "<= 15 us", status, unit="us")


def _order_check(result: ScenarioResult | None, subject: str, label: str) -> TargetCheck:
    name = f"redis: {label} in-order, no loss"
    run = result.run(subject) if result is not None else None
    if run is None or not run.rounds:
        return TargetCheck(
            name, None, "0 missing, 0 reordered", _not_measured(result, (subject, "")), unit="msgs"
        )
    bad = sum(r.get("missing", 0) + r.get("out_of_order", 0) for r in run.rounds)
    return TargetCheck(name, bad, "0 missing, 0 reordered", MET if bad == 0 else MISSED, unit="msgs")


def _redis_checks(result: ScenarioResult | None) -> list[TargetCheck]:
    rate = ratio_check(
        "redis: two nodes / one node",
        result,
        "delivered_per_s",
        "two-nodes",
        "one-node",
        at_least=0.5,
    )
    order = _order_check(result, "two-nodes", "two nodes")
    if rate.status == MET and order.status != MET:
        rate = TargetCheck(rate.name, rate.measured, rate.required, MISSED)
    # Server CPU per delivery (every syncwire process and redis-server of the subject):
    # a cluster costs at most 1.3x one Redis; two workers at most 1.2x one process, so a
    # host with spare cores carries about N times the load with N workers.
    cluster = ratio_check(
        "redis: cluster / two nodes, server CPU per delivery",
        result,
        "server_us_per_msg",
        "cluster",
        "two-nodes",
        at_most=1.3,
    )
    workers = ratio_check(
        "redis: --workers 2 / one node, server CPU per delivery",
        result,
        "server_us_per_msg",
        "workers-2",
        "one-node",
        at_most=1.2,
    )
    over_redis = ratio_check(
        "redis: one node over Redis / memory broker, typed WS, server CPU per delivery",
        result,
        "server_us_per_msg",
        "one-node-ws",
        "memory-ws",
        at_most=1.5,
    )
    return [
        rate, order, cluster, _order_check(result, "cluster", "cluster"), workers,
        _order_check(result, "workers-2", "--workers 2"), over_redis,
        _order_check(result, "one-node-ws", "one node over Redis, typed WS"),
    ]
