#!/usr/bin/env python3
"""A tiny Prometheus exporter for culprit's live-services test (standard library only).

Three services in a call chain, frontend -> checkout -> payments-db, each with:
  demo_requests_total{service}   counter, requests served
  demo_errors_total{service}     counter, requests that failed
  demo_latency_seconds{service}  gauge, current p99-ish latency
  demo_cpu_ratio{service}        gauge, CPU use in [0, 1]
with mild random noise. The fault is on while the file given by --fault-file exists, after
--fault-after seconds from start, or after `GET /fault` (until `GET /fault?state=off`); during it
payments-db is the root cause (latency x8, CPU up), checkout suffers from it (latency x4, errors
up) and frontend shows the symptom (errors up, latency up). The fault reaches one hop further up
the chain every --hop-seconds (default 3 s: three scrapes at 1 s), as a real one spreads, so a
scrape never shows the cause and its symptoms starting at once.

  GET /metrics           Prometheus text format 0.0.4
  GET /fault             turns the fault on; ?state=off turns it off; answers JSON with the state
  GET /healthz           "ok"
"""
import argparse
import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SERVICES = ("frontend", "checkout", "payments-db")

# Per service: requests per second, error ratio, p99 latency (s), CPU ratio, normal then faulty.
NORMAL = {
    "frontend": dict(rps=40.0, err=0.004, lat=0.120, cpu=0.30),
    "checkout": dict(rps=40.0, err=0.003, lat=0.080, cpu=0.25),
    "payments-db": dict(rps=80.0, err=0.001, lat=0.020, cpu=0.20),
}
FAULT = {
    "frontend": dict(rps=40.0, err=0.15, lat=0.120 * 3.2, cpu=0.32),
    "checkout": dict(rps=40.0, err=0.20, lat=0.080 * 4, cpu=0.35),
    "payments-db": dict(rps=80.0, err=0.01, lat=0.020 * 8, cpu=0.92),
}

HELP = [
    ("demo_requests_total", "counter", "Requests served."),
    ("demo_errors_total", "counter", "Requests that failed."),
    ("demo_latency_seconds", "gauge", "Current p99 request latency in seconds."),
    ("demo_cpu_ratio", "gauge", "CPU use as a ratio of one core."),
]


class State:
    def __init__(self, fault_file, fault_after, hop_seconds, seed):
        self.hop_seconds = hop_seconds
        self.since = None
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.start = time.monotonic()
        self.last = self.start
        self.fault_file = fault_file
        self.fault_after = fault_after
        self.toggled = False
        self.was_on = False
        self.requests = {s: 0.0 for s in SERVICES}
        self.errors = {s: 0.0 for s in SERVICES}

    def fault_on(self, now):
        on = self.toggled
        if self.fault_file and os.path.exists(self.fault_file):
            on = True
        if self.fault_after is not None and now - self.start >= self.fault_after:
            on = True
        if on != self.was_on:
            self.was_on = on
            self.since = now if on else None
            print(f"exporter: fault {'on' if on else 'off'} at {time.time():.3f}", file=sys.stderr, flush=True)
        return on

    def profile(self, now, on):
        """Per service, the faulty profile once the fault has reached it (payments-db at onset,
        checkout one hop later, frontend two), else the normal one."""
        if not on:
            return NORMAL
        hops = (now - self.since) / self.hop_seconds if self.hop_seconds > 0 else len(SERVICES)
        # SERVICES runs from the caller to the root cause.
        return {s: FAULT[s] if hops >= len(SERVICES) - 1 - i else NORMAL[s] for i, s in enumerate(SERVICES)}

    def advance(self):
        """Moves the counters on to now; returns the current profile and whether the fault is on."""
        now = time.monotonic()
        on = self.fault_on(now)
        profile = self.profile(now, on)
        dt = now - self.last
        self.last = now
        for s in SERVICES:
            p = profile[s]
            n = p["rps"] * dt * self.rng.uniform(0.9, 1.1)
            self.requests[s] += n
            self.errors[s] += n * p["err"] * self.rng.uniform(0.7, 1.3)
        return profile, on

    def render(self):
        with self.lock:
            profile, _ = self.advance()
            values = {
                "demo_requests_total": {s: int(self.requests[s]) for s in SERVICES},
                "demo_errors_total": {s: int(self.errors[s]) for s in SERVICES},
                "demo_latency_seconds": {s: profile[s]["lat"] * self.rng.uniform(0.9, 1.1) for s in SERVICES},
                "demo_cpu_ratio": {s: min(1.0, profile[s]["cpu"] * self.rng.uniform(0.93, 1.07)) for s in SERVICES},
            }
        lines = []
        for name, kind, text in HELP:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for s in SERVICES:
                v = values[name][s]
                lines.append(f'{name}{{service="{s}"}} {v if isinstance(v, int) else f"{v:.6f}"}')
        return "\n".join(lines) + "\n"


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        def reply(self, code, body, ctype):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/metrics":
                self.reply(200, state.render(), "text/plain; version=0.0.4; charset=utf-8")
            elif url.path == "/fault":
                off = parse_qs(url.query).get("state", [""])[0] == "off"
                with state.lock:
                    state.toggled = not off
                    on = state.fault_on(time.monotonic())
                self.reply(200, json.dumps({"fault": on}) + "\n", "application/json")
            elif url.path == "/healthz":
                self.reply(200, "ok\n", "text/plain")
            else:
                self.reply(404, "not found\n", "text/plain")

        def log_message(self, *args):
            pass

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fault-file", help="the fault is on while this file exists")
    ap.add_argument("--fault-after", type=float, help="the fault turns on this many seconds after start")
    ap.add_argument("--hop-seconds", type=float, default=3.0, help="seconds the fault takes to reach the next caller")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    state = State(args.fault_file, args.fault_after, args.hop_seconds, args.seed)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    print(f"exporter: listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
