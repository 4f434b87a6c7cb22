#!/usr/bin/env python3
"""Writes the telemetry of the hand-labelled postmortem cases in this folder.

Each case is a write-up (postmortem.md) of an incident in the style of public postmortems, with
its label (truth.json) taken from the write-up by hand; the telemetry around it (metrics.csv,
logs.jsonl, changes.jsonl, topology.json, incident.json) is synthesised here to match what the
write-up describes. Deterministic (seeded by the case name). Run: python3 make_bundles.py .
"""
import json, random, math, os, sys
from datetime import datetime, timedelta, timezone
OUT = sys.argv[1]
def iso(t): return t.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'

def bundle(name, start, services, edges, metrics_fn, log_fn, changes, alert, truth, post):
    d = os.path.join(OUT, name); os.makedirs(d, exist_ok=True)
    rnd = random.Random(name)
    steps = 240
    cols = []
    rows = []
    for i in range(steps):
        t = start + timedelta(seconds=15 * i)
        row = {'time': int(t.timestamp())}
        for (svc, m), v in metrics_fn(i, t, rnd).items():
            row[f'{svc}_{m}'] = round(v, 4)
        rows.append(row)
    cols = list(rows[0].keys())
    with open(os.path.join(d, 'metrics.csv'), 'w') as f:
        f.write(','.join(cols) + '\n')
        for r in rows: f.write(','.join(str(r[c]) for c in cols) + '\n')
    with open(os.path.join(d, 'logs.jsonl'), 'w') as f:
        for i in range(steps * 3):
            t = start + timedelta(seconds=5 * i)
            for rec in log_fn(i, t, rnd):
                f.write(json.dumps(rec) + '\n')
    with open(os.path.join(d, 'changes.jsonl'), 'w') as f:
        for c in changes: f.write(json.dumps(c) + '\n')
    json.dump({'services': [{'name': s, 'kind': k} for s, k in services], 'edges': [{'caller': a, 'callee': b} for a, b in edges]}, open(os.path.join(d, 'topology.json'), 'w'), indent=2)
    json.dump(alert, open(os.path.join(d, 'incident.json'), 'w'), indent=2)
    json.dump(truth, open(os.path.join(d, 'truth.json'), 'w'), indent=2)
    open(os.path.join(d, 'postmortem.md'), 'w').write(post)

def noise(rnd, base, rel=0.05): return base * (1 + rnd.gauss(0, rel))

# --- 1. orders deploy with an unindexed query exhausts the database pool ---------------------
s1 = datetime(2025, 3, 4, 13, 30, tzinfo=timezone.utc)
dep = 32 * 60 // 15  # deploy at 14:02 (step 128)
def m1(i, t, rnd):
    after = i >= 128
    sat = min(1.0, max(0.0, (i - 130) / 8)) if after else 0.0
    return {
        ('web', 'latency_p99'): noise(rnd, 180 + 2200 * sat),
        ('web', 'error_rate'): max(0, noise(rnd, 0.002 + 0.06 * sat, 0.2)),
        ('checkout', 'latency_p99'): noise(rnd, 120 + 2600 * sat),
        ('checkout', 'error_rate'): max(0, noise(rnd, 0.003 + 0.09 * sat, 0.2)),
        ('orders', 'latency_p99'): noise(rnd, 60 + 2900 * sat),
        ('orders', 'cpu'): noise(rnd, 30 + 10 * sat),
        ('orders-db', 'connections_active'): min(100, noise(rnd, 22 + 78 * sat, 0.04)),
        ('orders-db', 'cpu'): noise(rnd, 35 + 50 * sat),
        ('catalog', 'latency_p99'): noise(rnd, 90),
        ('catalog', 'cpu'): noise(rnd, 25 + 20 * (1 if 60 <= i < 64 else 0)),
    }
def l1(i, t, rnd):
    out = []
    if i % 2 == 0: out.append({'time': iso(t), 'service': 'catalog', 'level': 'info', 'message': f'served GET /products/{rnd.randint(1,900)} in {rnd.randint(5,40)}ms'})
    out.append({'time': iso(t), 'service': 'checkout', 'level': 'info', 'message': f'order checkout started for cart {rnd.randint(1000,9999)}'})
    out.append({'time': iso(t), 'service': 'orders', 'level': 'info', 'message': f'created order {rnd.randint(10000,99999)} in {rnd.randint(8,30)}ms'})
    if i >= 390:
        out.append({'time': iso(t), 'service': 'orders', 'level': 'error', 'message': f'HikariPool-1 - Connection is not available, request timed out after {rnd.randint(30000,30050)}ms'})
        if i % 2: out.append({'time': iso(t), 'service': 'checkout', 'level': 'error', 'message': f'POST /orders failed: 503 from orders after {rnd.randint(29,31)}s'})
    return out
bundle('2025-03-orders-pool-exhaustion', s1,
    [('web', 'service'), ('checkout', 'service'), ('orders', 'service'), ('catalog', 'service'), ('orders-db', 'database')],
    [('web', 'checkout'), ('web', 'catalog'), ('checkout', 'orders'), ('orders', 'orders-db'), ('catalog', 'orders-db')],
    m1, l1,
    [{'time': iso(s1 + timedelta(minutes=32)), 'service': 'orders', 'kind': 'deploy', 'author': 'release-bot', 'version': 'v4.2.0', 'previous_version': 'v4.1.3', 'description': 'order history: filter by customer region'},
     {'time': iso(s1 + timedelta(minutes=15)), 'service': 'catalog', 'kind': 'deploy', 'author': 'release-bot', 'version': 'v2.8.1', 'previous_version': 'v2.8.0', 'description': 'copy changes'}],
    {'id': '2025-03-orders-pool-exhaustion', 'title': 'Checkout error rate above 5% on web', 'time': iso(s1 + timedelta(minutes=38)), 'service': 'web', 'signal': 'errors', 'severity': 'critical', 'analysis_start': iso(s1 + timedelta(minutes=8))},
    {'service': 'orders', 'indicator': 'version', 'kind': 'bad_deploy', 'chain': ['orders', 'checkout', 'web']},
    """# Postmortem: checkout failures after the orders v4.2.0 deploy (2025-03-04)

**Impact.** From 14:05 to 14:31 UTC about 6 % of checkouts failed and p99 latency on the web
tier rose from 0.2 s to 2.4 s.

**Timeline (UTC).**
- 13:45 catalog v2.8.1 (copy changes) deployed. No effect.
- 14:02 orders v4.2.0 deployed: order history gained a filter by customer region.
- 14:04 orders-db active connections start climbing; the new query scans `orders` without an
  index on `region` and holds each connection for seconds.
- 14:06 the pool (100 connections) is exhausted; orders logs `Connection is not available`.
- 14:08 alert: checkout error rate above 5 % on web.
- 14:31 v4.2.0 rolled back to v4.1.3; connections fall back to ~20 within a minute.

**Root cause.** The orders v4.2.0 deploy (an unindexed query), exhausting the orders-db
connection pool; checkout and web failed as its callers.

**Resolution.** Roll back orders to v4.1.3; add the index before re-deploying.

**Labelled for evaluation:** root cause `orders`, kind `bad_deploy`, chain orders → checkout → web.
""")

# --- 2. a lowered cache memory limit causes an eviction storm ---------------------------------
s2 = datetime(2025, 6, 17, 9, 0, tzinfo=timezone.utc)
def m2(i, t, rnd):
    after = i >= 120
    ev = min(1.0, max(0.0, (i - 121) / 4)) if after else 0.0
    return {
        ('gateway', 'latency_p99'): noise(rnd, 150 + 700 * ev),
        ('auth', 'latency_p99'): noise(rnd, 40 + 600 * ev),
        ('auth', 'cpu'): noise(rnd, 30 + 15 * ev),
        ('session-cache', 'evictions'): max(0, noise(rnd, 2 + 900 * ev, 0.2)),
        ('session-cache', 'hit_rate'): min(1, noise(rnd, 0.97 - 0.6 * ev, 0.01)),
        ('session-cache', 'mem'): noise(rnd, 3800 - 3300 * ev, 0.01),
        ('users-db', 'cpu'): noise(rnd, 25 + 60 * ev),
        ('users-db', 'latency_p99'): noise(rnd, 12 + 180 * ev),
        ('search', 'cpu'): noise(rnd, 40 + (30 if i % 40 < 3 else 0)),
    }
def l2(i, t, rnd):
    out = [{'time': iso(t), 'service': 'auth', 'level': 'info', 'message': f'session {rnd.randint(10**6, 10**7)} validated'}]
    if i % 3 == 0: out.append({'time': iso(t), 'service': 'search', 'level': 'info', 'message': f'query served in {rnd.randint(10,80)}ms'})
    if i >= 365 and i % 2 == 0:
        out.append({'time': iso(t), 'service': 'auth', 'level': 'warn', 'message': f'session cache miss for {rnd.randint(10**6, 10**7)}, loading from users-db'})
    return out
bundle('2025-06-session-cache-evictions', s2,
    [('gateway', 'service'), ('auth', 'service'), ('search', 'service'), ('session-cache', 'cache'), ('users-db', 'database')],
    [('gateway', 'auth'), ('gateway', 'search'), ('auth', 'session-cache'), ('auth', 'users-db')],
    m2, l2,
    [{'time': iso(s2 + timedelta(minutes=30)), 'service': 'session-cache', 'kind': 'config', 'author': 'ana', 'keys': [{'key': 'maxmemory', 'old': '4gb', 'new': '512mb'}], 'description': 'right-size cache instances'}],
    {'id': '2025-06-session-cache-evictions', 'title': 'Login latency p99 above 500 ms on gateway', 'time': iso(s2 + timedelta(minutes=34)), 'service': 'gateway', 'signal': 'latency', 'severity': 'high', 'analysis_start': iso(s2 + timedelta(minutes=4))},
    {'service': 'session-cache', 'indicator': 'maxmemory', 'kind': 'config_change', 'chain': ['session-cache', 'auth', 'gateway']},
    """# Postmortem: slow logins after a cache right-sizing change (2025-06-17)

**Impact.** From 09:30 to 09:52 UTC logins took up to 0.9 s at p99 (normally 0.15 s).

**Timeline (UTC).**
- 09:30 `maxmemory` of session-cache lowered from 4gb to 512mb in a cost right-sizing pass.
- 09:30–09:31 evictions jump from ~2/s to ~900/s; hit rate falls from 97 % to under 40 %.
- 09:31 auth falls back to users-db for most sessions; users-db CPU triples.
- 09:34 alert: login latency p99 above 500 ms on gateway.
- 09:52 `maxmemory` restored to 4gb; hit rate recovers within five minutes.

**Root cause.** The session-cache configuration change (`maxmemory` 4gb → 512mb) causing an
eviction storm; auth and gateway were slow as its callers, users-db as the fallback.

**Resolution.** Revert `maxmemory`; size caches from working-set measurements, not averages.

**Labelled for evaluation:** root cause `session-cache`, kind `config_change`, indicator
`maxmemory`, chain session-cache → auth → gateway.
""")

# --- 3. an expired certificate at the bank gateway -------------------------------------------
s3 = datetime(2025, 9, 30, 23, 30, tzinfo=timezone.utc)
def m3(i, t, rnd):
    bad = i >= 120
    return {
        ('checkout', 'error_rate'): max(0, noise(rnd, 0.002 + (0.18 if bad else 0), 0.2)),
        ('checkout', 'latency_p99'): noise(rnd, 200 + (40 if bad else 0)),
        ('payments', 'error_rate'): max(0, noise(rnd, 0.001 + (0.35 if bad else 0), 0.2)),
        ('payments', 'cpu'): noise(rnd, 20),
        ('bank-gw', 'error_rate'): min(1.0, max(0, noise(rnd, 0.001 + (0.97 if bad else 0), 0.02))),
        ('bank-gw', 'cpu'): noise(rnd, 15),
        ('ledger', 'cpu'): noise(rnd, 30 + (25 if 200 <= i < 206 else 0)),
    }
def l3(i, t, rnd):
    out = [{'time': iso(t), 'service': 'payments', 'level': 'info', 'message': f'authorised payment {rnd.randint(10**5, 10**6)} amount {rnd.randint(5,500)}.00 EUR'}]
    if i % 2 == 0: out.append({'time': iso(t), 'service': 'bank-gw', 'level': 'info', 'message': f'TLS session resumed with upstream acquirer {rnd.choice(["a1","a2"])}'})
    if i >= 360:
        out.append({'time': iso(t), 'service': 'bank-gw', 'level': 'error', 'message': 'x509: certificate has expired or is not yet valid: current time 2025-10-01 is after 2025-09-30T23:59:59Z'})
        out.append({'time': iso(t), 'service': 'payments', 'level': 'error', 'message': f'charge {rnd.randint(10**5, 10**6)} failed: upstream bank-gw returned 502'})
    return out
bundle('2025-10-bank-gateway-certificate', s3,
    [('checkout', 'service'), ('payments', 'service'), ('bank-gw', 'service'), ('ledger', 'service')],
    [('checkout', 'payments'), ('payments', 'bank-gw'), ('payments', 'ledger')],
    m3, l3, [],
    {'id': '2025-10-bank-gateway-certificate', 'title': 'Payment failures above 10% on checkout', 'time': iso(s3 + timedelta(minutes=33)), 'service': 'checkout', 'signal': 'errors', 'severity': 'critical', 'analysis_start': iso(s3 + timedelta(minutes=3))},
    {'service': 'bank-gw', 'indicator': 'errors', 'kind': 'expired_certificate', 'chain': ['bank-gw', 'payments', 'checkout']},
    """# Postmortem: card payments failed at midnight (2025-10-01)

**Impact.** From 00:00 to 00:41 UTC about 18 % of checkouts failed at payment.

**Timeline (UTC).**
- 00:00 the client certificate bank-gw presents to the card acquirer expires. No deploy or
  configuration change happened that night.
- 00:00 bank-gw logs `x509: certificate has expired`; nearly every upstream call fails.
- 00:00 payments logs `upstream bank-gw returned 502` for each failed charge.
- 00:03 alert: payment failures above 10 % on checkout.
- 00:41 a renewed certificate is installed on bank-gw; errors stop.

**Root cause.** The expired client certificate of bank-gw. payments and checkout failed as its
callers.

**Resolution.** Renew the certificate; alert 30 days before expiry; automate renewal.

**Labelled for evaluation:** root cause `bank-gw`, kind `expired_certificate`, chain bank-gw →
payments → checkout.
""")
