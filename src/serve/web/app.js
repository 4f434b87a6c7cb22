"use strict";
(function () {
  var TOKEN_KEY = "culprit.token";
  var REFRESH_MS = 5000;
  var SVGNS = "http://www.w3.org/2000/svg";

  var token = null;
  var gen = 0;            // bumped on every view change: late answers of an older view are dropped
  var listTimer = null;
  var pollTimer = null;
  var events = null;      // EventSource while an investigation runs
  var current = null;     // { id, data, live: Map(turn -> step) }
  var posting = false;

  function $(sel) { return document.querySelector(sel); }

  // ---------- DOM helpers: every piece of data goes in as text, never as markup ----------
  function add(node, kids) {
    for (var i = 0; i < kids.length; i++) {
      var k = kids[i];
      if (k === null || k === undefined || k === false) continue;
      if (Array.isArray(k)) { add(node, k); continue; }
      node.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return node;
  }
  function attrs(node, a) {
    if (!a) return node;
    Object.keys(a).forEach(function (key) {
      var v = a[key];
      if (v === null || v === undefined || v === false) return;
      if (key === "text") node.textContent = String(v);
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), v);
      else if (key === "style") node.style.cssText = String(v); // CSSOM: allowed by the CSP
      else node.setAttribute(key, v === true ? "" : String(v));
    });
    return node;
  }
  function el(tag, a) { return add(attrs(document.createElement(tag), a), [].slice.call(arguments, 2)); }
  function sv(tag, a) { return add(attrs(document.createElementNS(SVGNS, tag), a), [].slice.call(arguments, 2)); }
  function show(node, on) { node.hidden = !on; }

  // ---------- formatting ----------
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function fmtMs(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return "—";
    var d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }
  function span(ms) {
    var s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return s + " s";
    var m = Math.floor(s / 60); s = s % 60;
    if (m < 60) return m + " min" + (s && m < 10 ? " " + s + " s" : "");
    var h = Math.floor(m / 60); m = m % 60;
    if (h < 48) return h + " h" + (m ? " " + m + " min" : "");
    return Math.floor(h / 24) + " d";
  }
  function ago(ms) {
    if (typeof ms !== "number") return "—";
    var d = Date.now() - ms;
    return d < 5000 ? "just now" : span(d) + " ago";
  }
  function hms(iso) {
    var m = /T(\d\d:\d\d:\d\d)/.exec(String(iso || ""));
    return m ? m[1] : String(iso || "");
  }
  function relToAlert(iso, alertMs) {
    var t = Date.parse(iso);
    if (!isFinite(t) || typeof alertMs !== "number" || !isFinite(alertMs)) return "";
    var d = t - alertMs;
    if (Math.abs(d) < 1000) return "at the alert";
    return span(d) + (d < 0 ? " before alert" : " after alert");
  }
  function pct(x) {
    if (typeof x !== "number" || !isFinite(x)) return "—";
    return Math.round(x * 100) + "%";
  }
  function num(x, digits) {
    if (typeof x !== "number" || !isFinite(x)) return "—";
    return x.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 2 : digits });
  }
  function badge(cls, text) { return el("span", { "class": "badge " + cls, text: text }); }
  function statusBadge(s) { return badge("st-" + (s || "unknown"), s || "unknown"); }
  function sevBadge(s) { return badge("sev-" + (s || "unknown"), s || "—"); }
  function srcTag(s) { return el("span", { "class": "src " + (s || ""), text: s || "?" }); }
  function isLive(status) { return status === "queued" || status === "running"; }

  // ---------- token ----------
  function storeToken(t) {
    token = t;
    try { localStorage.setItem(TOKEN_KEY, t); } catch (e) { /* storage off: keep it in memory */ }
  }
  // the fragment is "k=v&k=v", percent-encoded; "+" stays "+" (tokens may be base64)
  function hashParams() {
    var out = new Map();
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("="), k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? "" : kv.slice(i + 1);
      try { out.set(decodeURIComponent(k), decodeURIComponent(v)); } catch (e) { out.set(k, v); }
    });
    return out;
  }
  function absorbTokenFromHash() {
    var p = hashParams();
    var t = p.get("token");
    if (t === undefined) return;
    p.delete("token");
    if (t) storeToken(t);
    var rest = Array.from(p.entries()).map(function (kv) {
      return encodeURIComponent(kv[0]) + "=" + encodeURIComponent(kv[1]);
    }).join("&");
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  function loadToken() {
    absorbTokenFromHash();
    if (!token) {
      try { token = localStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
    }
  }

  // ---------- API ----------
  function AuthError(status) { this.status = status; this.message = "HTTP " + status; }
  function api(path, opts) {
    opts = opts || {};
    var headers = { "Authorization": "Bearer " + token, "Accept": "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: opts.method || "GET",
      headers: headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      cache: "no-store",
      credentials: "same-origin"
    }).then(function (res) {
      if (res.status === 401 || res.status === 403) throw new AuthError(res.status);
      return res.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = undefined; }
        if (!res.ok) {
          var detail = body && (body.error || body.message);
          if (detail && typeof detail !== "string") detail = JSON.stringify(detail);
          if (!detail) detail = text.slice(0, 300);
          var err = new Error("HTTP " + res.status + (detail ? ": " + detail : ""));
          err.status = res.status;
          throw err;
        }
        if (body === undefined) throw new Error("the service answered with something that is not JSON");
        return body;
      });
    }, function (e) {
      throw new Error("cannot reach the culprit service (" + (e && e.message ? e.message : e) + ")");
    });
  }
  function invPath(id) { return "v1/investigations/" + encodeURIComponent(id); }

  // ---------- views ----------
  function stopAll() {
    if (listTimer) { clearTimeout(listTimer); listTimer = null; }
    if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
    closeEvents();
  }
  function setView(name) {
    show($("#auth"), name === "auth");
    show($("#list-view"), name === "list");
    show($("#detail-view"), name === "detail");
    show($("#forget-token"), name !== "auth");
  }
  function banner(text) {
    var b = $("#banner");
    b.textContent = text || "";
    show(b, !!text);
  }

  function showAuth(message) {
    gen++;
    stopAll();
    setView("auth");
    $("#auth-msg").textContent = message;
    $("#auth-msg").className = "msg " + (token ? "error" : "info");
    $("#token-input").value = "";
    $("#token-input").focus();
  }
  function authFailed(e) {
    showAuth(e.status === 403
      ? "The token was refused (HTTP 403: not allowed). Enter a token with access to this service."
      : "The token was not accepted (HTTP 401). Enter a valid token.");
  }

  function route() {
    absorbTokenFromHash();
    banner("");
    if (!token) { showAuth("Enter the API token for this culprit service. You can also open the page as …/#token=YOUR_TOKEN."); return; }
    var id = hashParams().get("id");
    if (id) showDetail(id); else showList();
  }

  // ---------- list ----------
  function showList() {
    var g = ++gen;
    stopAll();
    setView("list");
    document.title = "culprit — investigations";
    loadList(g);
  }
  function loadList(g) {
    listTimer = null;
    api("v1/investigations").then(function (data) {
      if (g !== gen) return;
      show($("#list-msg"), false);
      renderList((data && data.investigations) || []);
      $("#list-updated").textContent = "updated " + fmtMs(Date.now()).slice(11) + " · refreshes every 5 s";
    }, function (e) {
      if (g !== gen) return;
      if (e instanceof AuthError) { authFailed(e); return; }
      $("#list-msg").textContent = "Could not load investigations: " + e.message;
      show($("#list-msg"), true);
    }).then(function () {
      if (g === gen && !listTimer) listTimer = setTimeout(function () { loadList(g); }, REFRESH_MS);
    });
  }
  function renderList(items) {
    items = items.slice().sort(function (a, b) { return (b.created_ms || 0) - (a.created_ms || 0); });
    var rows = items.map(function (s) {
      var id = String(s.id);
      var open = function () { location.hash = "id=" + encodeURIComponent(id); };
      var top = s.top
        ? [el("b", { text: s.top.service || "none of these" }), " · ", s.top.kind || "?", " ",
           el("span", { "class": "muted nowrap", text: pct(s.top.confidence) })]
        : el("span", { "class": "faint", text: s.status === "done" ? "none" : s.status === "no_data" ? "no data" : "—" });
      return el("tr", { "class": "inv-row", "data-id": id, tabindex: "0",
                        onclick: open,
                        onkeydown: function (ev) { if (ev.key === "Enter") open(); } },
        el("td", { "class": "nowrap", title: fmtMs(s.created_ms), text: ago(s.created_ms) }),
        el("td", null,
          el("a", { "class": "t", href: "#id=" + encodeURIComponent(id), text: s.title || "(untitled)" }),
          el("div", { "class": "id", text: id })),
        el("td", { text: s.service || "—" }),
        el("td", null, sevBadge(s.severity)),
        el("td", null, statusBadge(s.status)),
        el("td", { "class": "muted", text: s.mode || "—" }),
        el("td", { "class": "num", text: s.alerts === undefined || s.alerts === null ? "—" : String(s.alerts) }),
        el("td", null, top),
        el("td", null, s.feedback ? badge("fb-" + s.feedback, s.feedback) : el("span", { "class": "faint", text: "—" })));
    });
    $("#inv-rows").replaceChildren.apply($("#inv-rows"), rows);
    show($("#list-empty"), rows.length === 0);
  }

  // ---------- detail ----------
  function showDetail(id) {
    var g = ++gen;
    stopAll();
    if (!current || current.id !== id) {
      current = { id: id, data: null, live: new Map() };
      $("#fb-note").value = "";
      $("#fb-kind").value = "";
      clearDetail();
      $("#d-title").textContent = "Loading " + id + "…";
    }
    setFbStatus("", "");
    setView("detail");
    window.scrollTo(0, 0);
    loadDetail(g);
  }
  function clearDetail() {
    ["#d-badges", "#d-kv", "#causes tbody", "#timeline tbody", "#groups", "#transcript", "#fb-list", "#data", "#fb-service"]
      .forEach(function (s) { $(s).replaceChildren(); });
    $("#graph").replaceChildren();
    show($("#d-error"), false);
    show($("#d-verdict"), false);
    show($("#detail-msg"), false);
    show($("#transcript-card"), false);
    show($("#data-card"), false);
  }
  function loadDetail(g) {
    pollTimer = null;
    var id = current.id;
    return api(invPath(id)).then(function (d) {
      if (g !== gen || !current || current.id !== id) return;
      show($("#detail-msg"), false);
      current.data = d;
      renderDetail(d);
      if (isLive(d.status)) startLive(g); else closeEvents();
    }, function (e) {
      if (g !== gen) return;
      if (e instanceof AuthError) { authFailed(e); return; }
      $("#detail-msg").textContent = (e.status === 404 ? "No investigation with id " + id + ". " : "Could not load the investigation: ") + e.message;
      show($("#detail-msg"), true);
      if (!current.data) $("#d-title").textContent = id;
      // keep trying while it may come back (service restart, still being created)
      if (!pollTimer) pollTimer = setTimeout(function () { loadDetail(g); }, REFRESH_MS);
    });
  }

  function topCause(report) {
    var rc = (report && report.root_causes) || [];
    if (!rc.length) return null;
    return rc.slice().sort(function (a, b) { return (a.rank || 0) - (b.rank || 0); })[0];
  }

  function renderDetail(d) {
    var r = d.report || null;
    var alert = (r && r.alert) || {};
    document.title = "culprit — " + (d.title || alert.title || d.id);

    $("#d-title").textContent = d.title || alert.title || String(d.id);
    $("#d-badges").replaceChildren(
      statusBadge(d.status), sevBadge(d.severity || alert.severity),
      badge("mode", d.mode ? d.mode + " mode" : "mode ?"));
    var kv = [];
    function pair(k, v) { if (v !== null && v !== undefined && v !== "") kv.push(el("span", null, k + " ", el("b", { text: v }))); }
    pair("alert:", [alert.service || d.service, alert.signal].filter(Boolean).join(" · "));
    var firedMs = typeof alert.time === "number" ? alert.time : Date.parse(alert.time);
    if (isFinite(firedMs)) pair("fired:", fmtMs(firedMs));
    pair("created:", fmtMs(d.created_ms) + " (" + ago(d.created_ms) + ")");
    pair("updated:", ago(d.updated_ms));
    if (typeof d.alerts === "number") pair("alerts:", String(d.alerts));
    if (r && r.incident) pair("incident:", r.incident);
    pair("id:", String(d.id));
    $("#d-kv").replaceChildren.apply($("#d-kv"), kv);

    var errBox = $("#d-error");
    var problems = (r && r.data && r.data.problems) || [];
    errBox.textContent = d.error ? "The investigation failed: " + d.error
      : d.status === "no_data" ? "No data to answer from: " + problems.join("; ") : "";
    show(errBox, !!d.error || d.status === "no_data");

    renderVerdict(d, r);
    renderCauses(d, r);
    renderGraph(r);
    renderTimeline(r);
    renderTranscript(d, r);
    renderFeedback(d, r);
    renderData(r);
  }

  function renderVerdict(d, r) {
    var v = $("#d-verdict");
    if (!r) {
      v.className = "verdict";
      v.replaceChildren(el("div", { "class": "big", text:
        isLive(d.status) ? "Investigation " + d.status + "… the report appears when it finishes." : "No report." }));
      show(v, true);
      return;
    }
    var top = topCause(r);
    if (r.verdict === "root_cause" && top) {
      v.className = "verdict found";
      v.replaceChildren(
        el("div", { "class": "big" }, "Most likely root cause: ", top.service, " (", top.kind, ") — ", pct(top.confidence)),
        top.chain && top.chain.length > 1 ? el("div", { "class": "muted", text: "propagation: " + top.chain.join(" → ") }) : null,
        top.action ? el("div", { "class": "action" }, el("b", { text: "Suggested action: " }), top.action) : null);
    } else {
      v.className = "verdict";
      v.replaceChildren(
        el("div", { "class": "big", text: "No root cause identified with confidence." }),
        el("div", { "class": "muted", text: top
          ? "The candidates below are the best leads, but none stands out from the rest."
          : "No anomaly upstream of the alert could be tied to it." }));
    }
    show(v, true);
  }

  function evLine(e) {
    return el("div", { "class": "ev" },
      el("span", { "class": "when", title: e.time, text: hms(e.time) }), srcTag(e.source),
      e.service ? el("b", { text: e.service + ": " }) : null, e.text);
  }

  function renderCauses(d, r) {
    var rc = ((r && r.root_causes) || []).slice().sort(function (a, b) { return (a.rank || 0) - (b.rank || 0); });
    var empty = $("#causes-empty");
    empty.textContent = !r ? (isLive(d.status) ? "Waiting for the report…" : "No report.") : "No candidate causes.";
    show(empty, rc.length === 0);
    show($("#causes"), rc.length > 0);
    var rows = rc.map(function (c, i) {
      var ev = c.evidence || [];
      var shown = ev.slice(0, 2).map(evLine);
      var more = ev.length > 2
        ? el("details", { "class": "more" }, el("summary", { text: "+" + (ev.length - 2) + " more" }), ev.slice(2).map(evLine))
        : null;
      var w = Math.max(0, Math.min(1, Number(c.confidence) || 0)) * 100;
      var fill = el("span");
      fill.style.width = w.toFixed(1) + "%";
      return el("tr", { "class": "cause" + (i === 0 ? " top" : "") + (c.explained ? " explained" : ""), "data-service": c.service },
        el("td", { "class": "num", text: c.rank }),
        el("td", null, el("span", { "class": "svc", text: c.service }),
          c.explained ? el("span", { "class": "tag", title: "downstream of another candidate that explains it", text: "explained" }) : null,
          el("span", { "class": "kind" }, c.kind, c.indicator && c.indicator !== c.kind ? " · " + c.indicator : ""),
          c.location && c.location !== c.kind && c.location !== c.indicator ? el("span", { "class": "kind", title: "where inside the service", text: "at " + c.location }) : null),
        el("td", null, el("div", { "class": "conf" }, el("span", { "class": "pct", text: pct(c.confidence) }), el("span", { "class": "bar" }, fill))),
        el("td", { "class": "chain", text: (c.chain && c.chain.length ? c.chain : [c.service]).join(" → ") }),
        el("td", { "class": "evcell" }, shown, more),
        el("td", { text: c.action || "" }));
    });
    $("#causes tbody").replaceChildren.apply($("#causes tbody"), rows);
  }

  // ---------- causal graph ----------
  var measureCtx = null;
  function textWidth(s, font) {
    if (!measureCtx) measureCtx = document.createElement("canvas").getContext("2d");
    measureCtx.font = font;
    return measureCtx.measureText(s).width;
  }

  function renderGraph(r) {
    var g = $("#graph");
    g.replaceChildren();
    var tl = (r && r.timeline) || [];
    var card = $("#graph-card");
    show(card, !!r);
    if (!r) return;
    if (!tl.length) {
      g.setAttribute("viewBox", "0 0 400 40"); g.setAttribute("width", "400"); g.setAttribute("height", "40");
      g.appendChild(sv("text", { x: 4, y: 24, "class": "empty", text: "No anomalies, nothing to draw." }));
      return;
    }
    // nodes: services in the timeline, with their anomaly count and first onset
    var nodes = [], byName = new Map();
    tl.forEach(function (t) {
      var n = byName.get(t.service);
      if (!n) {
        n = { name: t.service, count: 0, first: t.time, out: [], inn: [], layer: 0, order: 0 };
        byName.set(t.service, n); nodes.push(n);
      }
      n.count++;
      if (String(t.time) < String(n.first)) n.first = t.time;
    });
    // edges aggregated per service pair, self-loops dropped
    var agg = new Map();
    ((r.causal_edges) || []).forEach(function (e) {
      var a = tl[e.cause], b = tl[e.effect];
      if (!a || !b || a.service === b.service) return;
      var key = JSON.stringify([a.service, b.service]);
      var x = agg.get(key);
      if (!x) { x = { from: byName.get(a.service), to: byName.get(b.service), count: 0, weight: 0, reasons: new Set(), lag: Infinity }; agg.set(key, x); }
      x.count++;
      x.weight += Number(e.weight) || 0;
      if (e.reason) x.reasons.add(String(e.reason));
      if (typeof e.lag_ms === "number") x.lag = Math.min(x.lag, e.lag_ms);
    });
    var edges = Array.from(agg.values());
    edges.forEach(function (e) { e.from.out.push(e); e.to.inn.push(e); });

    var top = topCause(r);
    var rootName = r.verdict === "root_cause" && top ? top.service : null;
    var suspects = new Set(((r.root_causes) || []).map(function (c) { return c.service; }));
    var alertName = r.alert && r.alert.service;
    var chainPairs = new Set();
    if (rootName && top.chain) for (var i = 0; i + 1 < top.chain.length; i++) chainPairs.add(JSON.stringify([top.chain[i], top.chain[i + 1]]));

    // break cycles: DFS from the suspects (best first), then by first onset; edges into the stack are "back"
    var starts = nodes.slice().sort(function (a, b) { return String(a.first) < String(b.first) ? -1 : String(a.first) > String(b.first) ? 1 : 0; });
    var rank = new Map();
    ((r.root_causes) || []).slice().sort(function (a, b) { return (a.rank || 0) - (b.rank || 0); })
      .forEach(function (c, i) { if (!rank.has(c.service)) rank.set(c.service, i); });
    starts.sort(function (a, b) {
      var ra = rank.has(a.name) ? rank.get(a.name) : 1e9, rb = rank.has(b.name) ? rank.get(b.name) : 1e9;
      return ra - rb;
    });
    var state = new Map(); // 1 on stack, 2 done
    function dfs(n) {
      state.set(n, 1);
      n.out.forEach(function (e) {
        var s = state.get(e.to);
        if (s === 1) e.back = true;
        else if (!s) dfs(e.to);
      });
      state.set(n, 2);
    }
    starts.forEach(function (n) { if (!state.get(n)) dfs(n); });

    // back edges are laid out reversed (lf -> lt), which makes the layout graph acyclic; they are
    // drawn dashed with the arrowhead at their start
    edges.forEach(function (e) { e.lf = e.back ? e.to : e.from; e.lt = e.back ? e.from : e.to; });
    nodes.forEach(function (n) { n.lo = []; });
    edges.forEach(function (e) { e.lf.lo.push(e); });
    // longest-path layers (Kahn order)
    var indeg = new Map(nodes.map(function (n) { return [n, 0]; }));
    edges.forEach(function (e) { indeg.set(e.lt, indeg.get(e.lt) + 1); });
    var queue = starts.filter(function (n) { return indeg.get(n) === 0; });
    while (queue.length) {
      var n = queue.shift();
      n.lo.forEach(function (e) {
        e.lt.layer = Math.max(e.lt.layer, n.layer + 1);
        indeg.set(e.lt, indeg.get(e.lt) - 1);
        if (indeg.get(e.lt) === 0) queue.push(e.lt);
      });
    }
    // layout graph: real nodes plus one waypoint per layer crossed by a long edge, so long edges
    // get their own slot instead of running through the nodes in between
    var NODE_H = 44, WAY_H = 10, ROW_GAP = 18, COL_GAP = 90, PAD = 16;
    nodes.forEach(function (n) { n.h = NODE_H; n.lin = []; n.lout = []; });
    // services without any causal link go in a row of their own under the layered part
    var isolated = nodes.filter(function (n) { return !n.out.length && !n.inn.length; });
    var layout = nodes.filter(function (n) { return n.out.length || n.inn.length; });
    function link(a, b) { a.lout.push(b); b.lin.push(a); }
    edges.forEach(function (e) {
      e.way = [];
      var prev = e.lf;
      for (var l = e.lf.layer + 1; l < e.lt.layer; l++) {
        var w = { way: true, layer: l, h: WAY_H, w: 0, lin: [], lout: [], order: 0 };
        layout.push(w); e.way.push(w); link(prev, w); prev = w;
      }
      link(prev, e.lt);
    });
    var layers = [];
    layout.forEach(function (n) { (layers[n.layer] = layers[n.layer] || []).push(n); });
    for (var li0 = 0; li0 < layers.length; li0++) layers[li0] = layers[li0] || [];
    // order within layers: start from the DFS order, then barycenter sweeps to reduce crossings
    var startIdx = new Map(starts.map(function (n, i) { return [n, i]; }));
    layers.forEach(function (L) {
      L.sort(function (a, b) { return (startIdx.has(a) ? startIdx.get(a) : 1e9) - (startIdx.has(b) ? startIdx.get(b) : 1e9); });
      L.forEach(function (n, i) { n.order = i; });
    });
    function bary(n, dir) {
      var list = dir === "in" ? n.lin : n.lout;
      if (!list.length) return n.order;
      return list.reduce(function (s, m) { return s + m.order; }, 0) / list.length;
    }
    for (var sweep = 0; sweep < 6; sweep++) {
      var dir = sweep % 2 === 0 ? "in" : "out";
      var seq = dir === "in" ? layers.slice(1) : layers.slice(0, -1).reverse();
      seq.forEach(function (L) {
        var keyed = L.map(function (n) { return [bary(n, dir), n.order, n]; });
        keyed.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
        keyed.forEach(function (k, i) { L[i] = k[2]; k[2].order = i; });
      });
    }

    // geometry
    var FONT = "600 13px system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
    nodes.forEach(function (n) {
      n.sub = n.count + (n.count === 1 ? " anomaly" : " anomalies") + " · " + hms(n.first);
      n.w = Math.ceil(Math.max(textWidth(n.name, FONT), textWidth(n.sub, "11px system-ui, sans-serif")) + 24);
      n.w = Math.max(n.w, 96);
    });
    var colX = [], colW = [], x = PAD;
    layers.forEach(function (L, li) {
      colX[li] = x;
      colW[li] = Math.max.apply(null, L.map(function (n) { return n.w; }).concat([24]));
      x += colW[li] + COL_GAP;
    });
    var width = layers.length ? x - COL_GAP + PAD : 0;
    function stackH(L) { return L.reduce(function (s, n) { return s + n.h; }, 0) + Math.max(0, L.length - 1) * ROW_GAP; }
    var innerH = layers.length ? Math.max.apply(null, layers.map(stackH)) : 0;
    layers.forEach(function (L, li) {
      var y = PAD + (innerH - stackH(L)) / 2;
      L.forEach(function (n) {
        n.x = n.way ? colX[li] : colX[li] + (colW[li] - n.w) / 2;
        n.y = y;
        y += n.h + ROW_GAP;
      });
    });
    // ports: spread the edges entering (leaving) a node along its left (right) side, in the
    // vertical order of where they come from (go to), so arrows do not pile up on one point
    function mid(n) { return n.y + n.h / 2; }
    nodes.forEach(function (n) {
      var ins = edges.filter(function (e) { return e.lt === n; }).map(function (e) { return [mid(e.way.length ? e.way[e.way.length - 1] : e.lf), e]; });
      var outs = edges.filter(function (e) { return e.lf === n; }).map(function (e) { return [mid(e.way.length ? e.way[0] : e.lt), e]; });
      ins.sort(function (a, b) { return a[0] - b[0]; }).forEach(function (p, i) { p[1].y2 = n.y + n.h * (i + 1) / (ins.length + 1); });
      outs.sort(function (a, b) { return a[0] - b[0]; }).forEach(function (p, i) { p[1].y1 = n.y + n.h * (i + 1) / (outs.length + 1); });
    });
    var height = layers.length ? innerH + 2 * PAD : PAD;
    var isoLabel = null;
    if (isolated.length) {
      var rowMax = Math.max(width, (g.parentNode && g.parentNode.clientWidth) || 760), ix = PAD;
      isoLabel = sv("text", { "class": "empty", x: PAD, y: height + 8,
        text: layers.length ? "no causal link to the others:" : "no causal links were found between these services:" });
      height += 18;
      var iy = height;
      isolated.sort(function (a, b) { return (startIdx.get(a) || 0) - (startIdx.get(b) || 0); }).forEach(function (n) {
        if (ix > PAD && ix + n.w > rowMax - PAD) { ix = PAD; iy += NODE_H + ROW_GAP; }
        n.x = ix; n.y = iy;
        ix += n.w + 16;
        width = Math.max(width, ix - 16 + PAD);
      });
      height = iy + NODE_H + PAD;
    }

    g.setAttribute("viewBox", "0 0 " + width + " " + height);
    g.setAttribute("width", String(width));
    g.setAttribute("height", String(height));

    function marker(id, color) {
      return sv("marker", { id: id, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "9", markerHeight: "9", orient: "auto-start-reverse", markerUnits: "userSpaceOnUse" },
        sv("path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
    }
    g.appendChild(sv("defs", null, marker("arrow", "#a5aeb7"), marker("arrow-chain", "#b42318")));

    function curve(x1, y1, x2, y2) {
      var dx = Math.max(20, (x2 - x1) / 2);
      return " C" + (x1 + dx) + "," + y1 + " " + (x2 - dx) + "," + y2 + " " + x2 + "," + y2;
    }
    var edgeLayer = sv("g", { "class": "edges" });
    var maxCount = Math.max.apply(null, edges.map(function (e) { return e.count; }).concat([1]));
    edges.forEach(function (e) {
      var a = e.from, b = e.to, lf = e.lf, lt = e.lt;
      var px = lf.x + lf.w + (e.back ? 2 : 0), py = e.y1;
      var dpath = "M" + px + "," + py;
      e.way.forEach(function (w) {
        var wy = w.y + w.h / 2, wx2 = colX[w.layer] + colW[w.layer];
        dpath += curve(px, py, w.x, wy) + " L" + wx2 + "," + wy;
        px = wx2; py = wy;
      });
      dpath += curve(px, py, lt.x - (e.back ? 0 : 2), e.y2);
      var onChain = chainPairs.has(JSON.stringify([a.name, b.name]));
      var sw = 1.2 + 2.3 * Math.log(1 + e.count) / Math.log(1 + maxCount);
      var reasons = Array.from(e.reasons).join(", ") || "linked";
      var lag = isFinite(e.lag) ? ", shortest lag " + span(e.lag) : "";
      edgeLayer.appendChild(sv("path", {
        "class": "edge" + (onChain ? " chain" : "") + (e.back ? " back" : ""),
        "data-from": a.name, "data-to": b.name, d: dpath,
        "stroke-width": sw.toFixed(2),
        "marker-end": e.back ? null : onChain ? "url(#arrow-chain)" : "url(#arrow)",
        "marker-start": e.back ? (onChain ? "url(#arrow-chain)" : "url(#arrow)") : null
      }, sv("title", { text: a.name + " → " + b.name + ": " + e.count + (e.count === 1 ? " link" : " links") + " (" + reasons + ")" + lag })));
    });
    g.appendChild(edgeLayer);
    if (isoLabel) g.appendChild(isoLabel);

    var nodeLayer = sv("g", { "class": "nodes" });
    nodes.forEach(function (n) {
      var cls = "node" + (n.name === rootName ? " root" : suspects.has(n.name) ? " suspect" : "") + (n.name === alertName ? " alert" : "");
      var tip = n.name + ": " + n.sub + (n.name === rootName ? " — root cause" : suspects.has(n.name) ? " — suspect" : "") + (n.name === alertName ? " — alerting service" : "");
      nodeLayer.appendChild(sv("g", { "class": cls, "data-service": n.name, transform: "translate(" + n.x + "," + n.y + ")" },
        sv("title", { text: tip }),
        sv("rect", { width: n.w, height: NODE_H, rx: 6, ry: 6 }),
        sv("text", { x: n.w / 2, y: 18, "text-anchor": "middle", text: n.name }),
        sv("text", { "class": "sub", x: n.w / 2, y: 34, "text-anchor": "middle", text: n.sub })));
    });
    g.appendChild(nodeLayer);
  }

  // ---------- timeline ----------
  function renderTimeline(r) {
    show($("#timeline-card"), !!r);
    if (!r) return;
    var tl = (r.timeline || []).map(function (t, i) { return { t: t, i: i }; });
    tl.sort(function (a, b) { return String(a.t.time) < String(b.t.time) ? -1 : String(a.t.time) > String(b.t.time) ? 1 : a.i - b.i; });
    var top = topCause(r);
    var rootName = r.verdict === "root_cause" && top ? top.service : null;
    var alertMs = r.alert && (typeof r.alert.time === "number" ? r.alert.time : Date.parse(r.alert.time));
    $("#timeline-sub").textContent = tl.length + (tl.length === 1 ? " anomaly" : " anomalies") + ", by onset (UTC)";
    var rows = tl.map(function (x) {
      var t = x.t;
      return el("tr", { "class": "tl-item" + (t.service === rootName ? " is-root" : ""), "data-service": t.service },
        el("td", { "class": "when", title: t.time + (t.end ? " until " + t.end : "") },
          hms(t.time), t.end ? el("span", { "class": "rel", text: "until " + hms(t.end) }) : null,
          el("span", { "class": "rel", text: relToAlert(t.time, alertMs) })),
        el("td", null, el("b", { text: t.service })),
        el("td", null, srcTag(t.source)),
        el("td", { "class": "mono", text: t.indicator }),
        el("td", { "class": "num", text: num(t.score) }),
        el("td", { "class": "num", title: "share of the ranking walk's mass", text: typeof t.mass === "number" ? (t.mass * 100).toFixed(1) + "%" : "—" }),
        el("td", { text: t.evidence || "" }));
    });
    $("#timeline tbody").replaceChildren.apply($("#timeline tbody"), rows);
    show($("#timeline"), rows.length > 0);
    show($("#timeline-empty"), rows.length === 0);
    var groups = (r.groups || []).map(function (gr, i) {
      return el("span", null, el("b", { text: "group " + (i + 1) + ": " }),
        hms(gr.start) + "–" + hms(gr.end) + " · " + (gr.services || []).join(", ") + " · " + gr.anomalies + " anomalies");
    });
    $("#groups").replaceChildren.apply($("#groups"), groups);
  }

  // ---------- agent transcript ----------
  var STOPS = {
    confident: "the leading hypothesis reached the confidence threshold",
    concluded: "nothing left that would change the answer",
    turn_budget: "the turn budget ran out",
    time_budget: "the time budget ran out",
    token_budget: "the token budget ran out"
  };
  function argsText(a) {
    if (a === null || a === undefined) return "";
    if (typeof a !== "object") return String(a);
    return Object.keys(a).map(function (k) {
      var v = a[k];
      return k + "=" + (typeof v === "string" ? v : JSON.stringify(v));
    }).join(", ");
  }
  function stepItem(s, live) {
    var err = s.error;
    var errText = err ? (typeof err === "object" ? (err.kind ? err.kind + ": " : "") + (err.message || JSON.stringify(err)) : String(err)) : "";
    var ratios = (s.ratios || []).map(function (p) {
      var label = Array.isArray(p) ? p[0] : p && p.label, ratio = Array.isArray(p) ? p[1] : p && p.ratio;
      var cls = ratio > 1 ? " up" : ratio < 1 ? " down" : "";
      return el("span", { "class": "chip" + cls, title: "likelihood ratio", text: label + " ×" + num(ratio, 2) });
    });
    var changed = s.leader_before !== s.leader_after;
    return el("li", { "class": "step" + (err ? " err" : "") + (live ? " live" : ""), "data-turn": s.turn },
      el("div", { "class": "hd" }, el("span", { "class": "turn", text: "Turn " + s.turn }), s.tool,
        el("span", { "class": "muted", style: "font-weight:400", text: "(" + argsText(s.args) + ")" }),
        s.policy ? el("span", { "class": "faint", style: "font-weight:400", text: "  · " + s.policy }) : null),
      s.reasoning ? el("div", { "class": "reason", text: s.reasoning }) : null,
      s.summary ? el("div", { "class": "summary", text: s.summary }) : null,
      errText ? el("div", { "class": "error", text: "tool error: " + errText }) : null,
      ratios.length ? el("div", null, ratios) : null,
      el("div", { "class": "meta" }, "leader: ",
        el("span", { text: (s.leader_before || "?") + " " + pct(s.confidence_before) }), " → ",
        el("b", { text: (s.leader_after || "?") + " " + pct(s.confidence_after) }),
        changed ? el("span", { "class": "tag", text: "leader changed" }) : null));
  }
  function renderTranscript(d, r) {
    var box = $("#transcript");
    var t = r && r.investigation;
    var liveSteps = Array.from(current.live.values()).sort(function (a, b) { return a.turn - b.turn; });
    if (!t && !liveSteps.length) {
      var waiting = d.mode === "agent" && isLive(d.status);
      show($("#transcript-card"), waiting);
      $("#transcript-sub").textContent = waiting ? "live" : "";
      box.replaceChildren(waiting ? el("p", { "class": "muted", text: "The agent's steps appear here as it takes them." }) : null);
      return;
    }
    show($("#transcript-card"), true);
    if (!t) {
      $("#transcript-sub").textContent = "live — " + liveSteps.length + (liveSteps.length === 1 ? " step" : " steps") + " so far";
      box.replaceChildren(el("ol", { "class": "steps" }, liveSteps.map(function (s) { return stepItem(s, true); })));
      return;
    }
    var c = t.conclusion || {};
    $("#transcript-sub").textContent = (t.steps || []).length + " steps · policy " + (t.policy || "?");
    var facts = [
      "stop: " + (STOPS[t.stop] || t.stop || "?"),
      "threshold " + pct(t.threshold),
      (t.tool_errors || 0) + " tool error" + (t.tool_errors === 1 ? "" : "s"),
      num(t.tokens || 0, 0) + " tokens",
      (typeof t.seconds === "number" ? num(t.seconds, 1) + " s" : null)
    ].filter(Boolean).join(" · ");
    var hyps = (t.hypotheses || []).map(function (h) {
      var up = (h.posterior || 0) >= (h.prior || 0);
      return el("tr", null,
        el("td", null, h.service ? el("b", { text: h.service }) : el("i", { "class": "muted", text: "none of these" })),
        el("td", { "class": "muted", text: h.kind || "" }),
        el("td", { "class": "num", text: pct(h.prior) }),
        el("td", { "class": "num" }, el("b", { text: pct(h.posterior) }), el("span", { "class": up ? "chip up" : "chip down", text: up ? "▲" : "▼" })));
    });
    box.replaceChildren(
      el("div", { "class": "concl" },
        el("div", { "class": "big" }, "Conclusion: ", c.service ? c.service : "none of the suspects", c.kind ? " · " + c.kind : "", " — ", pct(c.confidence)),
        el("div", { "class": "muted", text: facts }),
        t.fallback ? el("div", { "class": "error", style: "color:var(--amber)", text: "fell back to the rules policy: " + t.fallback }) : null),
      hyps.length ? el("table", { "class": "hyp" },
        el("thead", null, el("tr", null, el("th", { text: "Hypothesis" }), el("th", { text: "Kind" }), el("th", { "class": "num", text: "Prior" }), el("th", { "class": "num", text: "Posterior" }))),
        el("tbody", null, hyps)) : null,
      el("ol", { "class": "steps" }, (t.steps || []).map(function (s) { return stepItem(s, false); })));
  }

  // ---------- feedback ----------
  function setFbStatus(text, cls) {
    var s = $("#fb-status");
    s.textContent = text;
    s.className = cls || "";
  }
  function renderFeedback(d, r) {
    var top = topCause(r);
    var services = [];
    function addSvc(s) { if (s && services.indexOf(s) < 0) services.push(s); }
    ((r && r.root_causes) || []).slice().sort(function (a, b) { return (a.rank || 0) - (b.rank || 0); })
      .forEach(function (c) { addSvc(c.service); });
    ((r && r.timeline) || []).forEach(function (t) { addSvc(t.service); });
    if (r && r.alert) addSvc(r.alert.service);
    if (!services.length) addSvc(d.service);
    var sel = $("#fb-service");
    var keep = sel.value;
    sel.replaceChildren.apply(sel, services.map(function (s) { return el("option", { value: s, text: s }); }));
    if (keep && services.indexOf(keep) >= 0) sel.value = keep;

    $("#fb-top").textContent = top ? "top cause: " + top.service + " · " + top.kind : "no top cause to confirm";
    $("#fb-confirm").disabled = posting || !top;
    $("#fb-reject").disabled = posting;
    $("#fb-correct").disabled = posting || services.length === 0;

    var fb = Array.isArray(d.feedback) ? d.feedback.slice() : [];
    fb.sort(function (a, b) { return (b.time_ms || 0) - (a.time_ms || 0); });
    var items = fb.map(function (f) {
      var what = [f.service, f.kind].filter(Boolean).join(" · ");
      return el("div", { "class": "fb-item", "data-id": f.id },
        el("div", null, badge("fb-" + f.verdict, f.verdict || "?"), " ",
          what ? el("b", { text: what }) : null, " ",
          el("span", { "class": "faint", text: "by " + (f.author || "unknown") + ", " + fmtMs(f.time_ms) })),
        f.note ? el("div", { "class": "note", text: f.note }) : null);
    });
    if (!items.length) items = [el("p", { "class": "muted", style: "margin:0", text: "None yet." })];
    $("#fb-list").replaceChildren.apply($("#fb-list"), items);
  }
  function sendFeedback(kind) {
    if (!current || !current.data || posting) return;
    var r = current.data.report, top = topCause(r);
    var note = $("#fb-note").value.trim();
    var body;
    if (kind === "confirm") {
      if (!top) { setFbStatus("There is no top cause to confirm.", "error"); return; }
      body = { verdict: "confirm", service: top.service, kind: top.kind, note: note };
    } else if (kind === "reject") {
      body = { verdict: "reject", note: note };
    } else {
      var svc = $("#fb-service").value;
      if (!svc) { setFbStatus("Choose the service that was the real cause.", "error"); return; }
      body = { verdict: "correct", service: svc, kind: $("#fb-kind").value.trim(), note: note };
    }
    var id = current.id, g = gen;
    posting = true;
    ["#fb-confirm", "#fb-reject", "#fb-correct"].forEach(function (s) { $(s).disabled = true; });
    setFbStatus("Sending…", "");
    api(invPath(id) + "/feedback", { method: "POST", body: body }).then(function () {
      posting = false;
      if (!current || current.id !== id) return;
      setFbStatus("Feedback stored", "ok");
      $("#fb-note").value = "";
      $("#fb-kind").value = "";
      if (g === gen) return loadDetail(g);
    }, function (e) {
      posting = false;
      if (e instanceof AuthError) { authFailed(e); return; }
      if (current && current.id === id) {
        setFbStatus("Feedback not stored: " + e.message, "error");
        if (current.data) renderFeedback(current.data, current.data.report);
      }
    });
  }

  // ---------- data summary ----------
  function renderData(r) {
    var d = r && r.data;
    show($("#data-card"), !!d);
    if (!d) return;
    var parts = [];
    function item(n, label) { if (typeof n === "number") parts.push(el("span", null, el("b", { text: num(n, 0) }), " " + label)); }
    item(d.metric_series, "metric series");
    item(d.log_lines, "log lines");
    item(d.log_templates, "log templates");
    item(d.spans, "spans");
    item(d.changes, "changes");
    var line = el("div", { "class": "data-line" });
    parts.forEach(function (p, i) { if (i) line.appendChild(document.createTextNode(" · ")); line.appendChild(p); });
    if (d.dependencies) add(line, [" · dependencies from ", el("b", { text: d.dependencies })]);
    var kids = [line];
    if (d.unchecked && d.unchecked.length) {
      kids.push(el("div", { "class": "data-line", style: "margin-top:6px", text: "Not checked:" }),
        el("ul", { "class": "plain" }, d.unchecked.map(function (u) { return el("li", { text: u }); })));
    }
    var u = d.unreadable;
    if (u && u.records_skipped) {
      kids.push(el("div", { "class": "data-line", style: "margin-top:6px" },
        el("b", { text: num(u.records_skipped, 0) }), " records could not be read"),
        el("ul", { "class": "plain" }, (u.issues || []).slice(0, 10).map(function (i) {
          return el("li", { text: typeof i === "object" ? (i.file || "?") + (i.line ? ":" + i.line : "") + (i.field ? " (" + i.field + ")" : "") + ": " + (i.message || "") : String(i) });
        })));
    }
    $("#data").replaceChildren.apply($("#data"), kids);
  }

  // ---------- live updates (server-sent events) ----------
  function closeEvents() {
    if (events) { events.close(); events = null; }
    $("#live-note").textContent = "";
  }
  function startLive(g) {
    if (events && events.culpritId === current.id) return;
    closeEvents();
    if (typeof EventSource === "undefined") { pollTimer = setTimeout(function () { loadDetail(g); }, REFRESH_MS); return; }
    var id = current.id;
    var es = new EventSource(invPath(id) + "/events?token=" + encodeURIComponent(token));
    es.culpritId = id;
    events = es;
    var finished = false;
    function finish() {
      if (finished) return;
      finished = true;
      closeEvents();
      if (g === gen) loadDetail(g);
    }
    function parse(ev) { try { return JSON.parse(ev.data); } catch (e) { return null; } }
    es.addEventListener("open", function () { $("#live-note").textContent = "live"; });
    es.addEventListener("step", function (ev) {
      var s = parse(ev);
      if (!s || g !== gen || !current || current.id !== id) return;
      current.live.set(s.turn, s);
      if (current.data && !(current.data.report && current.data.report.investigation)) renderTranscript(current.data, current.data.report);
    });
    es.addEventListener("status", function (ev) {
      var s = parse(ev);
      if (!s || g !== gen || !current || !current.data) return;
      current.data.status = s.status;
      var b = $("#d-badges").firstChild;
      if (b) b.replaceWith(statusBadge(s.status));
      if (!isLive(s.status)) finish();
    });
    es.addEventListener("done", finish);
    es.addEventListener("error", function () {
      if (g !== gen || events !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // the stream was refused or dropped for good: fall back to polling
        events = null;
        $("#live-note").textContent = "live updates unavailable, polling";
        if (!pollTimer) pollTimer = setTimeout(function () { loadDetail(g); }, REFRESH_MS);
      } else {
        $("#live-note").textContent = "reconnecting…";
      }
    });
  }

  // ---------- wiring ----------
  $("#token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var t = $("#token-input").value.trim();
    if (!t) return;
    storeToken(t);
    route();
  });
  $("#forget-token").addEventListener("click", function () {
    try { localStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    token = null;
    route();
  });
  $("#fb-confirm").addEventListener("click", function () { sendFeedback("confirm"); });
  $("#fb-reject").addEventListener("click", function () { sendFeedback("reject"); });
  $("#fb-correct").addEventListener("click", function () { sendFeedback("correct"); });
  window.addEventListener("hashchange", route);

  loadToken();
  route();
})();
