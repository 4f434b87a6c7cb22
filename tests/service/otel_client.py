#!/usr/bin/env python3
"""Sends real OpenTelemetry traces and logs (OTLP/HTTP protobuf) to culprit's receiver.

Simulates the chain frontend -> checkout -> payments-db: about every 100 ms one trace
  frontend  "GET /checkout"  (SERVER)
    checkout  "charge"       (SERVER, child of the frontend span)
      payments-db "SELECT"   (SERVER, child of the checkout span)
each service with its own TracerProvider and LoggerProvider (Resource service.name=<service>), so
the receiver sees three resources. From --fault-after seconds on, payments-db queries are 8x slower
(WARN "slow query" logs on payments-db) and about one in four times out at 2000 ms, which fails the
checkout span (status ERROR, ERROR log "payment failed: db timeout after 2000 ms") and the frontend
request (502). Before that: INFO logs only.

Span times are set explicitly (ending now), so a slow query does not slow the loop down.
At exit every provider is flushed and shut down, and one JSON line is printed:
  {"spans": <exported>, "logs": <exported>, "traces": n, "failed_exports": n, ...}
Exit status 1 when an export failed or a span or log record was not exported.

Needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http (pinned in scripts/setup.sh).
The logs signal is still under underscore modules in the SDK (opentelemetry._logs,
opentelemetry.sdk._logs, opentelemetry.exporter.otlp.proto.http._log_exporter): their public names.
"""
import argparse
import json
import random
import sys
import threading
import time

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

SERVICES = ("frontend", "checkout", "payments-db")
MS = 1_000_000  # nanoseconds


class Tally:
    """Export outcomes, shared by the counting exporters."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {"spans": 0, "logs": 0}
        self.failed_items = {"spans": 0, "logs": 0}
        self.failed_exports = 0

    def add(self, kind, n, success):
        with self.lock:
            if success:
                self.ok[kind] += n
            else:
                self.failed_items[kind] += n
                self.failed_exports += 1


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner, tally):
        self.inner, self.tally = inner, tally

    def export(self, spans):
        result = self.inner.export(spans)
        self.tally.add("spans", len(spans), result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    def __init__(self, inner, tally):
        self.inner, self.tally = inner, tally

    def export(self, batch):
        result = self.inner.export(batch)
        self.tally.add("logs", len(batch), result == LogRecordExportResult.SUCCESS)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


class Service:
    def __init__(self, name, base, headers, tally):
        resource = Resource.create({"service.name": name, "service.namespace": "demo", "deployment.environment.name": "test"})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(
                CountingSpanExporter(OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers, timeout=10), tally),
                schedule_delay_millis=500,
            )
        )
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(
                CountingLogExporter(OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=headers, timeout=10), tally),
                schedule_delay_millis=500,
            )
        )
        self.tracer = self.tracer_provider.get_tracer("culprit.demo", "0.1.0")
        self.logger = self.logger_provider.get_logger("culprit.demo", "0.1.0")

    def close(self):
        ok = self.tracer_provider.force_flush(15000)
        ok = self.logger_provider.force_flush(15000) and ok
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        return ok


SEVERITY = {
    "INFO": SeverityNumber.INFO,
    "WARN": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
}


def log(svc, span, at_ns, level, body, **attrs):
    svc.logger.emit(
        timestamp=at_ns,
        context=trace.set_span_in_context(span),
        severity_number=SEVERITY[level],
        severity_text=level,
        body=body,
        attributes=attrs,
    )


def one_trace(svcs, rng, faulty, order_id):
    """Emits one three-span trace ending now; returns (spans, log records) emitted."""
    fe, co, db = svcs["frontend"], svcs["checkout"], svcs["payments-db"]
    timeout = faulty and rng.random() < 0.25
    db_ms = rng.lognormvariate(0, 0.25) * 12.0 * (8 if faulty else 1)
    if timeout:
        db_ms = 2000.0
    co_own, fe_own = rng.uniform(6, 12), rng.uniform(3, 8)
    total_ms = db_ms + co_own + fe_own + 5
    fe_start = time.time_ns() - int(total_ms * MS)
    co_start = fe_start + int(2 * MS)
    db_start = co_start + int(3 * MS)
    db_end = db_start + int(db_ms * MS)
    co_end = db_end + int(co_own * MS)
    fe_end = co_end + int(fe_own * MS)
    logs = 0

    fe_span = fe.tracer.start_span(
        "GET /checkout",
        kind=SpanKind.SERVER,
        start_time=fe_start,
        attributes={"http.request.method": "GET", "http.route": "/checkout", "url.path": "/checkout", "order.id": order_id},
    )
    co_span = co.tracer.start_span(
        "charge",
        context=trace.set_span_in_context(fe_span),
        kind=SpanKind.SERVER,
        start_time=co_start,
        attributes={"rpc.method": "charge", "order.id": order_id},
    )
    db_span = db.tracer.start_span(
        "SELECT",
        context=trace.set_span_in_context(co_span),
        kind=SpanKind.SERVER,
        start_time=db_start,
        attributes={
            "db.system.name": "postgresql",
            "db.operation.name": "SELECT",
            "db.collection.name": "payments",
            "db.query.text": "SELECT status FROM payments WHERE order_id = $1",
        },
    )
    if db_ms > 60:
        log(db, db_span, db_end, "WARN", f"slow query: {db_ms:.0f} ms SELECT status FROM payments WHERE order_id = $1", **{"db.duration_ms": round(db_ms, 1)})
        logs += 1
    db_span.end(end_time=db_end)

    if timeout:
        co_span.set_status(Status(StatusCode.ERROR, "db timeout"))
        co_span.add_event("exception", {"exception.type": "DbTimeout", "exception.message": "db timeout after 2000 ms"}, timestamp=db_end)
        log(co, co_span, db_end, "ERROR", "payment failed: db timeout after 2000 ms", **{"order.id": order_id})
    else:
        log(co, co_span, co_end, "INFO", f"payment charged for order {order_id}", **{"order.id": order_id})
    logs += 1
    co_span.end(end_time=co_end)

    status = 502 if timeout else 200
    fe_span.set_attribute("http.response.status_code", status)
    if timeout:
        fe_span.set_status(Status(StatusCode.ERROR, "upstream checkout failed"))
        log(fe, fe_span, fe_end, "ERROR", f"GET /checkout 502 in {(fe_end - fe_start) / MS:.0f} ms: upstream checkout failed", **{"http.response.status_code": status})
    else:
        log(fe, fe_span, fe_end, "INFO", f"GET /checkout 200 in {(fe_end - fe_start) / MS:.0f} ms", **{"http.response.status_code": status})
    logs += 1
    fe_span.end(end_time=fe_end)
    return 3, logs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="receiver base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", required=True, help="bearer token (write --token=VALUE if it starts with -)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to emit")
    ap.add_argument("--fault-after", type=float, default=5.0, help="seconds before the fault starts")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between traces")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    base = args.base.rstrip("/")
    headers = {"Authorization": f"Bearer {args.token}"}
    tally = Tally()
    svcs = {s: Service(s, base, headers, tally) for s in SERVICES}
    rng = random.Random(args.seed)

    start = time.monotonic()
    spans = logs = traces = faulty_traces = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= args.seconds:
            break
        faulty = elapsed >= args.fault_after
        s, l = one_trace(svcs, rng, faulty, f"o-{traces:05d}")
        spans, logs, traces = spans + s, logs + l, traces + 1
        faulty_traces += faulty
        next_at = start + traces * args.interval
        time.sleep(max(0.0, next_at - time.monotonic()) * rng.uniform(0.8, 1.2))

    flushed = all([svc.close() for svc in svcs.values()])
    out = {
        "spans": tally.ok["spans"],
        "logs": tally.ok["logs"],
        "traces": traces,
        "faulty_traces": faulty_traces,
        "emitted": {"spans": spans, "logs": logs},
        "failed_exports": tally.failed_exports,
        "flushed": flushed,
    }
    print(json.dumps(out), flush=True)
    good = flushed and tally.failed_exports == 0 and tally.ok == {"spans": spans, "logs": logs}
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
