#!/usr/bin/env python3
"""Runs the live-services setup end to end, for checking it by hand and as documentation.

Not used by CI: the Rust integration test starts the same pieces around the real `culprit serve`.
This script stands a small stdlib HTTP server in for culprit (on the "culprit port", same paths,
same bearer token check), then:
  1. picks free ports on 127.0.0.1 and renders prometheus.yml.tmpl, alertmanager.yml.tmpl (and
     copies rules.yml) into a temporary directory, which also holds the data dirs and logs;
  2. starts exporter.py, Prometheus and Alertmanager (each in its own process group);
  3. waits --baseline seconds of normal traffic, then creates the exporter's fault file;
  4. waits for Alertmanager's webhook (FrontendErrorRate, status firing) on the stand-in and prints
     how long each step took from the fault on;
  5. runs otel_client.py against the stand-in (real OTLP/HTTP traces and logs);
  6. with --resolve, removes the fault file and waits for the resolved webhook;
  7. shows a query_range as culprit's config would run it ({services} expanded), and stops
     every process group it started.

  .venv/bin/python tests/service/harness.py [--baseline 40] [--resolve] [--keep]

Timings seen here (2 cores): all three servers ready in <1 s, but Prometheus' first scrape and its
first alert delivery wait ~5 s for its discovery managers; from the fault on, the alert is pending
after ~5 s (the 15 s rate window must tilt past 5%), firing after ~7 s (for: 2s), and the webhook
arrives after ~8 s (group_wait 1s); resolved ~13 s after the fault is off (group_interval 5s).

Binaries: $CULPRIT_TEST_PROMETHEUS and $CULPRIT_TEST_ALERTMANAGER, else /usr/bin/prometheus and
/usr/bin/prometheus-alertmanager (Debian's packages). Nothing uses the default ports 9090/9093.
"""
import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES = ("frontend", "checkout", "payments-db")
CULPRIT_PATHS = ("/v1/alerts/alertmanager", "/v1/traces", "/v1/logs", "/v1/metrics")
T0 = time.monotonic()


def say(msg):
    # One write per line: the stand-in's threads print too.
    sys.stdout.write(f"[{time.monotonic() - T0:7.2f}s] {msg}\n")
    sys.stdout.flush()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(src, dst, values):
    """Replaces each {{NAME}} by its value; refuses to leave a placeholder unfilled."""
    with open(src) as f:
        text = f.read()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", str(value))
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise SystemExit(f"{src}: unfilled placeholders {sorted(set(left))}")
    with open(dst, "w") as f:
        f.write(text)


def http_get(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def get_json(url):
    return json.loads(http_get(url)[1])


def wait_http(url, what, timeout=60, procs=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        for p in procs or ():
            if p.poll() is not None:
                raise SystemExit(f"{what} exited with {p.returncode} (see its log)")
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready at {url} after {timeout}s")


class Procs:
    """Child processes, each the leader of its own process group, stopped together."""

    def __init__(self):
        self.items = []

    def start(self, name, argv, log_path):
        log = open(log_path, "w")
        say(f"start {name}: {' '.join(argv)}")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.items.append((name, p, log))
        return p

    def stop(self):
        for name, p, _ in reversed(self.items):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for name, p, log in reversed(self.items):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
            log.close()
        self.items = []


class StandIn:
    """Stands in for `culprit serve`: checks the bearer token, counts bytes, keeps webhook bodies."""

    def __init__(self, port, token):
        self.token = token
        self.lock = threading.Lock()
        self.counts = {p: [0, 0] for p in CULPRIT_PATHS}  # requests, bytes
        self.webhooks = []  # (monotonic time, parsed body)
        self.rejected = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                if path not in CULPRIT_PATHS:
                    return self.answer(404, b"not found\n", "text/plain")
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    with outer.lock:
                        outer.rejected += 1
                    return self.answer(401, b"unauthorized\n", "text/plain")
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                now = time.monotonic()
                with outer.lock:
                    outer.counts[path][0] += 1
                    outer.counts[path][1] += len(body)
                    if path == "/v1/alerts/alertmanager":
                        outer.webhooks.append((now, body))
                if ctype == "application/json":
                    say(f"stand-in: POST {path} {len(body)} B json: {body[:300].decode('utf-8', 'replace')}")
                else:
                    say(f"stand-in: POST {path} {len(body)} B {ctype}")
                if ctype == "application/x-protobuf":
                    # An empty Export*ServiceResponse message serializes to zero bytes.
                    return self.answer(200, b"", "application/x-protobuf")
                return self.answer(200, b"{}", "application/json")

            def answer(self, code, data, ctype):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def webhook_since(self, t, status):
        with self.lock:
            hooks = list(self.webhooks)
        for at, body in hooks:
            if at < t:
                continue
            payload = json.loads(body)
            if payload.get("status") == status and any(a["labels"].get("alertname") == "FrontendErrorRate" for a in payload.get("alerts", [])):
                return at, payload
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def alert_state(prom):
    """The FrontendErrorRate alert's state in Prometheus ('inactive', 'pending' or 'firing')."""
    try:
        alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    except (OSError, ValueError, KeyError):
        return "unknown"
    states = [a["state"] for a in alerts if a["labels"].get("alertname") == "FrontendErrorRate"]
    return "firing" if "firing" in states else ("pending" if "pending" in states else "inactive")


def wait_webhook(stand_in, prom, since, status, timeout):
    """Polls until the webhook with this status arrives; returns (its time, payload, state times)."""
    seen = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = alert_state(prom)
        if state not in seen:
            seen[state] = time.monotonic()
            say(f"Prometheus: FrontendErrorRate {state}")
        hit = stand_in.webhook_since(since, status)
        if hit:
            return hit[0], hit[1], seen
        time.sleep(0.25)
    raise SystemExit(f"no {status} webhook within {timeout}s (see the logs in the temp dir)")


def query_range(prom, query, seconds):
    end = time.time()
    params = urllib.parse.urlencode({"query": query, "start": f"{end - seconds:.3f}", "end": f"{end:.3f}", "step": "1s"})
    body = get_json(f"{prom}/api/v1/query_range?{params}")
    if body.get("status") != "success":
        raise SystemExit(f"query_range {query!r}: {body}")
    return body["data"]["result"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=float, default=40.0, help="seconds of normal traffic before the fault")
    ap.add_argument("--alert-timeout", type=float, default=120.0)
    ap.add_argument("--otel-seconds", type=float, default=6.0)
    ap.add_argument("--resolve", action="store_true", help="also turn the fault off and wait for the resolved webhook")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, data, logs)")
    args = ap.parse_args()

    prometheus = os.environ.get("CULPRIT_TEST_PROMETHEUS", "/usr/bin/prometheus")
    alertmanager = os.environ.get("CULPRIT_TEST_ALERTMANAGER", "/usr/bin/prometheus-alertmanager")
    for b in (prometheus, alertmanager):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"{b} not found: run scripts/setup.sh --llm")

    tmp = tempfile.mkdtemp(prefix="culprit-svc-")
    ports = {"exporter": free_port(), "prometheus": free_port(), "alertmanager": free_port(), "culprit": free_port()}
    if len(set(ports.values())) != len(ports):
        raise SystemExit(f"port clash {ports}: run again")
    token = secrets.token_hex(16)
    fault_file = os.path.join(tmp, "fault")
    say(f"temp dir {tmp}; ports {ports}")

    shutil.copy(os.path.join(HERE, "rules.yml"), os.path.join(tmp, "rules.yml"))
    render(
        os.path.join(HERE, "prometheus.yml.tmpl"),
        os.path.join(tmp, "prometheus.yml"),
        {
            "EXPORTER_ADDR": f"127.0.0.1:{ports['exporter']}",
            "ALERTMANAGER_ADDR": f"127.0.0.1:{ports['alertmanager']}",
            "RULES_FILE": os.path.join(tmp, "rules.yml"),
        },
    )
    render(
        os.path.join(HERE, "alertmanager.yml.tmpl"),
        os.path.join(tmp, "alertmanager.yml"),
        {"CULPRIT_PORT": ports["culprit"], "TOKEN": token},
    )
    for tool, argv in (("promtool", ["check", "config", os.path.join(tmp, "prometheus.yml")]), ("amtool", ["check-config", os.path.join(tmp, "alertmanager.yml")])):
        path = shutil.which(tool)
        if path:
            r = subprocess.run([path, *argv], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"{tool} rejects the config:\n{r.stdout}{r.stderr}")
            say(f"{tool}: config OK")

    procs = Procs()
    stand_in = None
    prom = f"http://127.0.0.1:{ports['prometheus']}"
    am = f"http://127.0.0.1:{ports['alertmanager']}"
    ok = False
    try:
        stand_in = StandIn(ports["culprit"], token)
        exp = procs.start(
            "exporter",
            [sys.executable, os.path.join(HERE, "exporter.py"), "--port", str(ports["exporter"]), "--fault-file", fault_file],
            os.path.join(tmp, "exporter.log"),
        )
        amp = procs.start(
            "alertmanager",
            [
                alertmanager,
                f"--config.file={tmp}/alertmanager.yml",
                f"--storage.path={tmp}/alertmanager-data",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",
                f"--web.external-url=http://127.0.0.1:{ports['alertmanager']}/",
            ],
            os.path.join(tmp, "alertmanager.log"),
        )
        pp = procs.start(
            "prometheus",
            [
                prometheus,
                f"--config.file={tmp}/prometheus.yml",
                f"--storage.tsdb.path={tmp}/prometheus-data",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--storage.tsdb.retention.time=1h",
                f"--web.external-url=http://127.0.0.1:{ports['prometheus']}/",
            ],
            os.path.join(tmp, "prometheus.log"),
        )
        t_start = time.monotonic()
        wait_http(f"http://127.0.0.1:{ports['exporter']}/healthz", "exporter", procs=[exp])
        wait_http(f"{am}/-/ready", "alertmanager", procs=[amp])
        wait_http(f"{prom}/-/ready", "prometheus", procs=[pp])
        say(f"all ready after {time.monotonic() - t_start:.1f}s")

        deadline = time.monotonic() + 30
        while True:
            res = get_json(f"{prom}/api/v1/query?query=" + urllib.parse.quote('up{job="demo"}'))["data"]["result"]
            if res and res[0]["value"][1] == "1":
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"exporter target not up: {res}")
            time.sleep(0.5)
        say(f"exporter scraped; {args.baseline:.0f}s of baseline")
        time.sleep(args.baseline)
        state = alert_state(prom)
        if state != "inactive" or stand_in.webhooks:
            raise SystemExit(f"alert is {state} during the baseline (webhooks {len(stand_in.webhooks)})")

        open(fault_file, "w").close()
        t_fault = time.monotonic()
        say("fault on (fault file created)")
        t_hook, payload, seen = wait_webhook(stand_in, prom, t_fault, "firing", args.alert_timeout)
        say("firing webhook received")
        timings = {f"prometheus_{k}": round(v - t_fault, 2) for k, v in seen.items() if k in ("pending", "firing")}
        timings["webhook_firing"] = round(t_hook - t_fault, 2)

        say(f"running otel_client.py for {args.otel_seconds:.0f}s")
        before = {p: list(c) for p, c in stand_in.counts.items()}
        python = sys.executable
        try:
            import opentelemetry.sdk  # noqa: F401
        except ImportError:
            python = os.path.join(HERE, "..", "..", ".venv", "bin", "python")
        r = subprocess.run(
            [python, os.path.join(HERE, "otel_client.py"), f"--base=http://127.0.0.1:{ports['culprit']}", f"--token={token}",
             "--seconds", str(args.otel_seconds), "--fault-after", str(args.otel_seconds / 3)],
            capture_output=True, text=True, timeout=120, start_new_session=True,
        )
        sys.stderr.write(r.stderr)
        say(f"otel_client.py exit {r.returncode}: {r.stdout.strip()}")
        if r.returncode != 0:
            raise SystemExit("otel_client.py failed")
        otel = json.loads(r.stdout.strip().splitlines()[-1])
        for p in ("/v1/traces", "/v1/logs"):
            if stand_in.counts[p][0] <= before[p][0]:
                raise SystemExit(f"stand-in got no POST {p}")

        if args.resolve:
            os.unlink(fault_file)
            t_off = time.monotonic()
            say("fault off (fault file removed)")
            t_res, _, _ = wait_webhook(stand_in, prom, t_off, "resolved", args.alert_timeout)
            timings["webhook_resolved_after_fault_off"] = round(t_res - t_off, 2)

        svc = "|".join(SERVICES)
        lat = query_range(prom, f'demo_latency_seconds{{service=~"{svc}"}}', 90)
        err = query_range(prom, f'rate(demo_errors_total{{service=~"{svc}"}}[15s])', 90)
        for name, result in (("latency", lat), ("error_rate", err)):
            for s in result:
                vals = [float(v) for _, v in s["values"]]
                say(f"query_range {name}: labels {s['metric']} points {len(vals)} first {vals[0]:.3f} max {max(vals):.3f} last {vals[-1]:.3f}")
        if sorted(s["metric"].get("service") for s in lat) != sorted(SERVICES) or any("__name__" in s["metric"] for s in err):
            raise SystemExit("query_range results are not as culprit expects")

        print(json.dumps({
            "timings_s_from_fault_on": timings,
            "alert_rule": "FrontendErrorRate (rate[15s] ratio > 0.05, for 2s; eval 1s; group_wait 1s)",
            "otel": otel,
            "stand_in": {p: {"requests": c[0], "bytes": c[1]} for p, c in stand_in.counts.items()},
            "rejected": stand_in.rejected,
        }, indent=2))
        print("webhook body (firing):")
        print(json.dumps(payload, indent=2))
        ok = True
    finally:
        procs.stop()
        if stand_in:
            stand_in.close()
        if args.keep or not ok:
            say(f"kept {tmp} (configs, data, logs)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    say("done" if ok else "FAILED")


if __name__ == "__main__":
    # A SIGTERM unwinds like an error, so the finally block stops every process group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
