#!/usr/bin/env python3
"""Drive the `culprit serve` web UI in headless Chromium and check the investigation page end to end.

    web_check.py --base http://127.0.0.1:PORT --token TOKEN --id INVESTIGATION_ID --screenshot OUT.png

Opens BASE/#token=TOKEN, waits for the investigation list, opens ID from it, checks the ranked causes,
the causal graph (nodes, and edges when the report has links between services), posts a "correct"
feedback and waits for "Feedback stored", then saves a full-page screenshot. Prints one JSON line
{"causes":n,"nodes":n,"edges":n,"feedback":"stored"} on success; exits non-zero with a message on
stderr on any failure, including a JavaScript error on the page or a request to another origin.

Needs Python playwright and Debian's Chromium (no browser download): `pip install playwright`.
"""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTE = "checked in chromium"


class CheckError(Exception):
    pass


def fetch_report(base: str, token: str, inv_id: str, timeout: float) -> dict:
    """The investigation as the API gives it, to know what the page should show."""
    url = f"{base}/v1/investigations/{urllib.parse.quote(inv_id, safe='')}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return json.load(res)
    except urllib.error.HTTPError as e:
        raise CheckError(f"GET {url} answered HTTP {e.code}: {e.read()[:300]!r}") from e
    except (urllib.error.URLError, OSError) as e:
        raise CheckError(f"cannot reach {url}: {e}") from e


def expected_graph(report: dict) -> tuple[int, int]:
    """(services in the timeline, distinct service pairs linked by causal_edges, self-loops excluded)."""
    timeline = report.get("timeline") or []
    services = {t["service"] for t in timeline}
    pairs = set()
    for e in report.get("causal_edges") or []:
        try:
            a, b = timeline[e["cause"]]["service"], timeline[e["effect"]]["service"]
        except (IndexError, KeyError, TypeError):
            continue
        if a != b:
            pairs.add((a, b))
    return len(services), len(pairs)


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base = args.base.rstrip("/")
    timeout_ms = int(args.timeout * 1000)
    inv = fetch_report(base, args.token, args.id, args.timeout)
    if inv.get("status") != "done" or not inv.get("report"):
        raise CheckError(f"investigation {args.id} is {inv.get('status')!r} without a finished report; check a done one")
    report = inv["report"]
    want_causes = len(report.get("root_causes") or [])
    want_nodes, want_edges = expected_graph(report)
    if want_causes == 0:
        raise CheckError(f"investigation {args.id} has no root causes: nothing to check on the page")

    js_errors: list[str] = []
    foreign: list[str] = []
    origin = urllib.parse.urlsplit(base)
    origin = (origin.scheme, origin.netloc)

    def step(what: str, fn):
        try:
            return fn()
        except PlaywrightTimeout as e:
            raise CheckError(f"timed out after {args.timeout:g} s: {what}") from e
        except PlaywrightError as e:
            raise CheckError(f"{what}: {e}") from e

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS, timeout=timeout_ms)
        except PlaywrightError as e:
            raise CheckError(f"cannot start Chromium at {args.chromium}: {e}") from e
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(timeout_ms)
            page.on("pageerror", lambda exc: js_errors.append(f"uncaught: {exc}"))
            page.on("console", lambda msg: js_errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)

            def on_request(req):
                u = urllib.parse.urlsplit(req.url)
                if u.scheme in ("data", "blob", "about"):
                    return
                if (u.scheme, u.netloc) != origin:
                    foreign.append(req.url)

            page.on("request", on_request)

            step("open the page", lambda: page.goto(f"{base}/#token={urllib.parse.quote(args.token, safe='')}", wait_until="load"))
            row = f'tr.inv-row[data-id="{args.id}"]' if '"' not in args.id else None
            if row is None:
                raise CheckError("the investigation id contains a double quote")
            step(f"the list shows a row for {args.id}", lambda: page.wait_for_selector(row, state="visible"))
            if "token=" in page.url:
                raise CheckError(f"the token is still in the address after load: {page.url}")
            step("open the investigation", lambda: page.click(row))
            step("ranked causes appear (#causes tr.cause)", lambda: page.wait_for_selector("#causes tr.cause", state="visible"))
            step("the causal graph has nodes (#graph g.node)", lambda: page.wait_for_selector("#graph g.node", state="attached"))
            if want_edges:
                step("the causal graph has edges (#graph .edge)",
                     lambda: page.wait_for_selector("#graph path.edge, #graph line.edge", state="attached"))

            causes = page.locator("#causes tr.cause").count()
            nodes = page.locator("#graph g.node").count()
            edges = page.locator("#graph path.edge, #graph line.edge").count()
            if causes != want_causes:
                raise CheckError(f"{causes} cause rows on the page, the report has {want_causes} root causes")
            if nodes != want_nodes:
                raise CheckError(f"{nodes} graph nodes on the page, the report's timeline has {want_nodes} services")
            if edges != want_edges:
                raise CheckError(f"{edges} graph edges on the page, the report links {want_edges} service pairs")

            options = page.locator("#fb-service option").count()
            if options == 0:
                raise CheckError("#fb-service has no options")
            step("choose the first service in #fb-service", lambda: page.select_option("#fb-service", index=0))
            step("type the note", lambda: page.fill("#fb-note", NOTE))
            step("click #fb-correct", lambda: page.click("#fb-correct"))
            try:
                # A selector, not wait_for_function: the page's Content-Security-Policy forbids eval.
                page.wait_for_selector("#fb-status:has-text('Feedback stored')", state="visible", timeout=timeout_ms)
            except PlaywrightTimeout as e:
                status = page.locator("#fb-status").text_content() or ""
                raise CheckError(f"#fb-status never said 'Feedback stored' (it says {status.strip()!r})") from e
            step("the stored feedback is listed (.fb-item with the note)",
                 lambda: page.wait_for_selector(f".fb-item:has-text({json.dumps(NOTE)})", state="visible"))

            step("save the screenshot", lambda: page.screenshot(path=args.screenshot, full_page=True))
        except CheckError as e:
            if js_errors:
                raise CheckError(f"{e}\nJavaScript errors on the page:\n  " + "\n  ".join(js_errors)) from e
            raise
        finally:
            browser.close()

    if js_errors:
        raise CheckError("JavaScript errors on the page:\n  " + "\n  ".join(js_errors))
    if foreign:
        raise CheckError("the page made requests outside the service:\n  " + "\n  ".join(sorted(set(foreign))))
    return {"causes": causes, "nodes": nodes, "edges": edges, "feedback": "stored"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="service root, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", required=True, help="API bearer token")
    ap.add_argument("--id", required=True, help="a done investigation with a report")
    ap.add_argument("--screenshot", required=True, help="where to save the full-page PNG")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each step (default: %(default)s)")
    args = ap.parse_args()
    try:
        result = run(args)
    except CheckError as e:
        print(f"web_check: FAIL: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"web_check: FAIL: Python playwright is not installed ({e}); pip install playwright", file=sys.stderr)
        return 2
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
