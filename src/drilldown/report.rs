//! A drill-down report: the search, Shapley attribution, bootstrap confidence, the checks, a
//! narrative and a chart; and versioned baselines (snapshots a later report compares against).

use super::checks::{self, Audit, Checks};
use super::search::{self, Cuboids, RippleConfig, SqueezeConfig};
use super::table::{span_text, DataError, Query, Rows};
use super::{text_label, Cube, CubeBuilder, Element, Explanation, Finding};
use crate::model::{Change, Ts};
use crate::rng::normal;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    /// culprit's ripple-effect search (multi-attribute).
    Ripple,
    /// The Squeeze baseline (clusters of deviation, GPS).
    Squeeze,
    /// The Adtributor baseline (one attribute per element).
    Adtributor,
}

/// Runs a search on a cube.
pub fn localise(kind: SearchKind, cube: &Cube, cuboids: &Cuboids, max_layer: usize) -> Vec<Element> {
    match kind {
        SearchKind::Ripple => search::ripple(cube, cuboids, &RippleConfig { max_layer, ..Default::default() }),
        SearchKind::Squeeze => search::squeeze(cube, cuboids, &SqueezeConfig { max_layer, ..Default::default() }),
        SearchKind::Adtributor => search::adtributor(cube, search::ADTRIBUTOR_EEP, search::ADTRIBUTOR_EP),
    }
}

/// Per element, the share of `replicas` bootstrap replicas in which the search finds it again.
/// A replica redraws each segment's actual numerator and denominator as the Poisson bootstrap
/// of its rows would (each row weighted by a Poisson(1) count: mean the sum, variance the sum
/// of squares, covariance Σab), in the normal approximation; forecasts stay. So a finding
/// carried by a few noisy rows is found again less often than one carried by many. Replicas
/// run on two threads.
pub fn confidence(
    kind: SearchKind,
    cube: &Cube,
    cuboids: &Cuboids,
    max_layer: usize,
    found: &[Element],
    replicas: usize,
    seed: u64,
) -> Vec<f64> {
    if found.is_empty() || replicas == 0 {
        return vec![0.0; found.len()];
    }
    let threads = 2;
    let hits: Vec<usize> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut hits = vec![0usize; found.len()];
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(t as u64));
                    let mut replica = cube.clone();
                    for _ in (t..replicas).step_by(threads) {
                        for (l, r) in cube.leaves.iter().zip(&mut replica.leaves) {
                            let (z1, z2) = (normal(&mut rng), normal(&mut rng));
                            let [aa, bb, ab] = l.var;
                            let sa = aa.max(0.0).sqrt();
                            let k = if sa > 0.0 { ab / sa } else { 0.0 };
                            // Not clamped at 0: clamping would bias sparse leaves upwards, and the
                            // sum of those biases would pass for a change.
                            r.a = l.a + sa * z1;
                            r.b = l.b + k * z1 + (bb - k * k).max(0.0).sqrt() * z2;
                        }
                        let again = localise(kind, &replica, cuboids, max_layer);
                        for (h, e) in hits.iter_mut().zip(found) {
                            *h += usize::from(again.contains(e));
                        }
                    }
                    hits
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().ok())
            .fold(vec![0; found.len()], |acc, h| acc.iter().zip(&h).map(|(a, b)| a + b).collect())
    });
    hits.iter().map(|&h| h as f64 / replicas as f64).collect()
}

/// What a report compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineRef {
    /// The stored baseline's name and version, when one was used or saved.
    pub name: Option<String>,
    pub version: Option<u32>,
    pub window: String,
    pub forecast: String,
    pub data: String,
    pub created: Option<String>,
}

/// A stored baseline: the forecast per segment, with what it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    pub version: u32,
    pub created: String,
    pub kpi: String,
    pub dims: Vec<String>,
    pub window: (Ts, Ts),
    pub forecast: String,
    pub data: String,
    /// Segment values (one per dimension), forecast numerator and denominator for a window as
    /// long as `length_ms`.
    pub segments: Vec<(Vec<String>, f64, f64)>,
    pub length_ms: Ts,
}

/// A stored baseline that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline name {0:?}: use letters, digits, '-', '_' and '.'")]
    Name(String),
    #[error("--against {0:?}: the version after @ is a number")]
    Version(String),
    #[error("no baseline named {name:?} in {}", root.display())]
    NoBaseline { name: String, root: PathBuf },
    #[error("baseline {name:?} has no version {version} (versions: {versions:?})")]
    NoVersion { name: String, version: u32, versions: Vec<u32> },
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}: {error}", path.display())]
    Json { path: PathBuf, error: serde_json::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The folder of a named baseline's versions.
fn baseline_dir(root: &Path, name: &str) -> Result<PathBuf, BaselineError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.starts_with('.')
    {
        return Err(BaselineError::Name(name.to_string()));
    }
    Ok(root.join(name))
}

fn versions(dir: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix('v')?.strip_suffix(".json")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Stores the cube's forecast as the next version of `name` under `root`.
pub fn save_baseline(
    root: &Path,
    name: &str,
    cube: &Cube,
    q: &Query,
    kpi: &str,
    forecast: &str,
    data: &str,
) -> Result<Snapshot, BaselineError> {
    let dir = baseline_dir(root, name)?;
    std::fs::create_dir_all(&dir).map_err(|source| BaselineError::Io { path: dir.clone(), error: source })?;
    let version = versions(&dir).last().map_or(1, |v| v + 1);
    let segments = cube
        .leaves
        .iter()
        .filter(|l| l.fa != 0.0 || l.fb != 0.0)
        .map(|l| (l.attrs.iter().enumerate().map(|(d, &v)| cube.values[d][v as usize].clone()).collect(), l.fa, l.fb))
        .collect();
    let snap = Snapshot {
        name: name.to_string(),
        version,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        kpi: kpi.to_string(),
        dims: cube.dims.clone(),
        window: q.baseline,
        forecast: forecast.to_string(),
        data: data.to_string(),
        segments,
        length_ms: q.current.1 - q.current.0,
    };
    let path = dir.join(format!("v{version}.json"));
    let text =
        serde_json::to_string(&snap).map_err(|source| BaselineError::Json { path: path.clone(), error: source })?;
    // Written beside and renamed: a reader never sees half a version.
    let tmp = dir.join(format!(".v{version}.json.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|source| BaselineError::Io { path: path.clone(), error: source })?;
    Ok(snap)
}

/// Loads `NAME` (the newest version) or `NAME@N`.
pub fn load_baseline(root: &Path, spec: &str) -> Result<Snapshot, BaselineError> {
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => {
            (n, Some(v.trim_start_matches('v').parse::<u32>().map_err(|_| BaselineError::Version(spec.to_string()))?))
        }
        None => (spec, None),
    };
    let dir = baseline_dir(root, name)?;
    let all = versions(&dir);
    let v = match version {
        Some(v) => v,
        None => {
            *all.last().ok_or_else(|| BaselineError::NoBaseline { name: name.to_string(), root: root.to_path_buf() })?
        }
    };
    if !all.contains(&v) {
        return Err(BaselineError::NoVersion { name: name.to_string(), version: v, versions: all });
    }
    let path = dir.join(format!("v{v}.json"));
    let text =
        std::fs::read_to_string(&path).map_err(|source| BaselineError::Io { path: path.clone(), error: source })?;
    let snap: Snapshot =
        serde_json::from_str(&text).map_err(|source| BaselineError::Json { path: path.clone(), error: source })?;
    if let Some((i, _)) = snap.segments.iter().enumerate().find(|(_, s)| s.0.len() != snap.dims.len()) {
        let message =
            format!("segment {} has {} values for {} dimensions", i + 1, snap.segments[i].0.len(), snap.dims.len());
        return Err(BaselineError::Invalid { path, message });
    }
    if snap.length_ms <= 0 {
        return Err(BaselineError::Invalid { path, message: "length_ms must be positive".into() });
    }
    Ok(snap)
}

/// The cube of the current window against a stored baseline (scaled to the current window's
/// length; segments new since the baseline have no forecast).
pub fn cube_against(rows: &Rows, q: &Query, snap: &Snapshot) -> Result<Cube, DataError> {
    if snap.dims != rows.dims {
        return Err(DataError::File {
            file: rows.file.clone(),
            message: format!(
                "baseline {}@{} has dimensions {} but --dims is {}",
                snap.name,
                snap.version,
                snap.dims.join(","),
                rows.dims.join(",")
            ),
        });
    }
    let mut b = CubeBuilder::new(rows.dims.clone());
    let mut any = false;
    for r in 0..rows.len() {
        let t = rows.time[r];
        if t >= q.current.0 && t < q.current.1 {
            b.add_row(rows.key(r), rows.num[r], rows.den(r));
            any = true;
        }
    }
    if !any {
        return Err(DataError::File {
            file: rows.file.clone(),
            message: format!("the current window ({}) has no rows", span_text(q.current)),
        });
    }
    let scale = (q.current.1 - q.current.0) as f64 / snap.length_ms.max(1) as f64;
    let mut key = vec![0u32; rows.dims.len()];
    for (values, fa, fb) in &snap.segments {
        for (d, v) in values.iter().enumerate() {
            key[d] = b.id(d, v);
        }
        b.add_forecast(&key, fa * scale, fb * scale);
    }
    Ok(b.build(rows.ratio))
}

/// An earlier report's findings, for "since the last report".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Earlier {
    pub before: f64,
    pub after: f64,
    pub baseline: BaselineRef,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Since {
    pub earlier_baseline: BaselineRef,
    pub earlier_after: f64,
    pub new: Vec<String>,
    pub gone: Vec<String>,
    /// Elements in both, with their share then and now.
    pub kept: Vec<(String, f64, f64)>,
}

pub fn compare(earlier: &Earlier, now: &[Finding]) -> Since {
    let old: HashMap<&str, f64> = earlier.findings.iter().map(|f| (f.element.as_str(), f.share)).collect();
    Since {
        earlier_baseline: earlier.baseline.clone(),
        earlier_after: earlier.after,
        new: now.iter().filter(|f| !old.contains_key(f.element.as_str())).map(|f| f.element.clone()).collect(),
        gone: earlier
            .findings
            .iter()
            .filter(|f| !now.iter().any(|n| n.element == f.element))
            .map(|f| f.element.clone())
            .collect(),
        kept: now
            .iter()
            .filter_map(|f| old.get(f.element.as_str()).map(|&s| (f.element.clone(), s, f.share)))
            .collect(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub kpi: String,
    pub current: String,
    pub baseline: BaselineRef,
    pub rows: usize,
    pub segments: usize,
    pub search: SearchKind,
    pub max_attributes: usize,
    pub bootstrap_replicas: usize,
    #[serde(flatten)]
    pub explanation: Explanation,
    pub audit: Audit,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Checks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Since>,
    pub narrative: Vec<String>,
}

/// What to run besides the search.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub kpi: String,
    pub search: SearchKind,
    pub max_attributes: usize,
    pub replicas: usize,
    pub seed: u64,
    pub changes: Vec<Change>,
    /// The segment the changes touched (else derived from each change's version or service).
    pub treated: Option<Element>,
    /// An experiment's arm dimension and planned split.
    pub arm: Option<(String, Vec<f64>)>,
}

/// The segment a change touched, from the data's dimensions: its service, or a changed key that
/// is a dimension. (Not its new version: that segment has no rows before the change, so it has
/// nothing to compare.)
fn touched(rows: &Rows, c: &Change) -> Option<Element> {
    let has = |d: &str, v: &str| {
        rows.dims.iter().position(|x| x == d).is_some_and(|i| rows.values()[i].iter().any(|x| x == v))
    };
    if has("service", &c.service) {
        return Some(vec![("service".into(), c.service.clone())]);
    }
    c.keys
        .iter()
        .find(|k| k.new.as_deref().is_some_and(|v| has(&k.key, v)))
        .map(|k| vec![(k.key.clone(), k.new.clone().unwrap_or_default())])
}

/// The whole drill-down of `cube` (made from `rows` for `q`).
pub fn build(
    rows: &Rows,
    q: &Query,
    cube: &Cube,
    baseline: BaselineRef,
    opts: &Options,
    since: Option<&Earlier>,
) -> Report {
    let cuboids = Cuboids::new(cube, opts.max_attributes);
    let found = localise(opts.search, cube, &cuboids, opts.max_attributes);
    let mut explanation = super::explain(cube, &found);
    let conf = confidence(opts.search, cube, &cuboids, opts.max_attributes, &found, opts.replicas, opts.seed);
    for (f, c) in explanation.findings.iter_mut().zip(conf) {
        f.confidence = (opts.replicas > 0).then_some(c);
    }
    explanation.rank();
    let audit = checks::audit(rows, q);
    let changes: Vec<Checks> = opts
        .changes
        .iter()
        .take(5)
        .map(|c| {
            let mut ch = Checks { change: Some(change_text(c)), ..Default::default() };
            if q.baseline.1 <= q.baseline.0 {
                ch.skipped.push("difference-in-differences and temporal order (compared against a stored baseline: no baseline rows were read)".into());
                return ch;
            }
            let treated = opts.treated.clone().or_else(|| touched(rows, c));
            match &treated {
                Some(t) => match checks::did(rows, q, t, opts.seed) {
                    Ok(d) => ch.did = Some(d),
                    Err(e) => ch.skipped.push(format!("difference-in-differences ({e})")),
                },
                None => ch.skipped.push("difference-in-differences (no dimension value is the change's service or changed key; give --treated)".into()),
            }
            ch.order = Some(checks::temporal_order(rows, q, treated.as_ref(), c.time));
            ch
        })
        .collect();
    let mut changes = changes;
    if let Some((dim, split)) = &opts.arm {
        let mut ch = Checks::default();
        match checks::srm(rows, q, dim, split) {
            Ok(s) => ch.srm = Some(s),
            Err(e) => ch.skipped.push(format!("sample ratio ({e})")),
        }
        changes.push(ch);
    }
    let since = since.map(|e| compare(e, &explanation.findings));
    let mut r = Report {
        kpi: opts.kpi.clone(),
        current: span_text(q.current),
        baseline,
        rows: rows.len(),
        segments: cube.leaves.len(),
        search: opts.search,
        max_attributes: opts.max_attributes,
        bootstrap_replicas: opts.replicas,
        explanation,
        audit,
        changes,
        since,
        narrative: Vec::new(),
    };
    r.narrative = narrative(&r, cube.ratio);
    r
}

fn change_text(c: &Change) -> String {
    let kind = match c.kind {
        crate::model::ChangeKind::Deploy => "deploy",
        crate::model::ChangeKind::Config => "config change",
        crate::model::ChangeKind::Flag => "flag change",
    };
    let what = match (&c.version, c.keys.first()) {
        (Some(v), _) => format!(" {v}"),
        (None, Some(k)) => format!(" {}", k.key),
        _ => String::new(),
    };
    format!("{kind}{what} of {} at {}", c.service, crate::ingest::time::fmt_time(c.time))
}

/// A KPI value: percent for a ratio within 0..1, else four significant digits.
fn fmt_kpi(x: f64, ratio: bool, both_unit: bool) -> String {
    if ratio && both_unit {
        format!("{:.2} %", 100.0 * x)
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

/// The report in sentences: the change, what explains it and how sure, the checks, and the
/// audit's warnings first.
pub fn narrative(r: &Report, ratio: bool) -> Vec<String> {
    let x = &r.explanation;
    let unit = ratio
        && [x.before, x.after]
            .iter()
            .chain(x.findings.iter().flat_map(|f| [&f.before, &f.after]))
            .all(|v| (0.0..=1.0).contains(v));
    let k = |v: f64| fmt_kpi(v, ratio, unit);
    let mut out: Vec<String> = r.audit.warnings.iter().map(|w| format!("Data warning: {w}.")).collect();
    let change = x.after - x.before;
    let verb = if change < 0.0 {
        "fell"
    } else if change > 0.0 {
        "rose"
    } else {
        "stayed"
    };
    let noun = if change < 0.0 { "drop" } else { "rise" };
    let against = match (&r.baseline.name, r.baseline.version) {
        (Some(n), Some(v)) => format!("baseline {n} v{v}, {}", r.baseline.forecast),
        _ => r.baseline.forecast.clone(),
    };
    out.push(format!(
        "{} {verb} from {} to {} (forecast {against}; current window {}).",
        r.kpi,
        k(x.before),
        k(x.after),
        r.current
    ));
    if x.findings.is_empty() {
        out.push(format!(
            "No combination of up to {} attributes explains the {noun}: it is spread over the segments.",
            r.max_attributes
        ));
    }
    for f in &x.findings {
        let conf = f.confidence.map(|c| format!(", confidence {c:.2}")).unwrap_or_default();
        out.push(format!(
            "{:.0} % of the {noun} is explained by {} ({} → {}){conf}.",
            100.0 * f.share,
            text_label(&f.element),
            k(f.before),
            k(f.after)
        ));
    }
    if x.findings.len() > 1 {
        out.push(format!("Together they explain {:.0} % of it.", 100.0 * x.explained));
    }
    for c in &r.changes {
        if let Some(ch) = &c.change {
            out.push(format!("Change {ch}:"));
        }
        out.extend(c.lines());
    }
    if let Some(s) = &r.since {
        out.push(format!(
            "Since the earlier report (against {}): new {}; gone {}.",
            s.earlier_baseline.window,
            if s.new.is_empty() {
                "none".into()
            } else {
                s.new.iter().map(|e| text_label(e)).collect::<Vec<_>>().join(", ")
            },
            if s.gone.is_empty() {
                "none".into()
            } else {
                s.gone.iter().map(|e| text_label(e)).collect::<Vec<_>>().join(", ")
            }
        ));
    }
    out
}

/// A bar chart of the findings' shares of the change (and what is left), as SVG.
pub fn chart(r: &Report) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut bars: Vec<(String, f64)> =
        r.explanation.findings.iter().map(|f| (text_label(&f.element), f.share)).collect();
    bars.push(("not explained".into(), 1.0 - r.explanation.explained));
    let (w, row, left) = (720.0, 28.0, 300.0);
    let max = bars.iter().map(|b| b.1.abs()).fold(1.0f64, f64::max);
    let scale = (w - left - 80.0) / max;
    let h = 50.0 + row * bars.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">"#
    );
    s += &format!(
        r#"<text x="10" y="22" font-weight="bold">{}: share of the change by segment (Shapley)</text>"#,
        esc(&r.kpi)
    );
    for (i, (name, share)) in bars.iter().enumerate() {
        let y = 40.0 + row * i as f64;
        let len = share.abs() * scale;
        let color = if i + 1 == bars.len() {
            "#bbbbbb"
        } else if *share >= 0.0 {
            "#c0392b"
        } else {
            "#2e86c1"
        };
        s += &format!(r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, left - 8.0, y + 15.0, esc(name));
        s += &format!(r#"<rect x="{left}" y="{}" width="{len:.1}" height="{}" fill="{color}"/>"#, y + 4.0, row - 8.0);
        s += &format!(r#"<text x="{:.1}" y="{}">{:.0} %</text>"#, left + len + 6.0, y + 15.0, 100.0 * share);
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::super::table::{self, read, window, Measure, Method};
    use super::*;

    fn data(dir: &Path) -> PathBuf {
        // 30 baseline minutes and 10 current ones; conversion falls in ios ∧ se only.
        let mut text = String::from("time,device,region,version,orders,visits\n");
        for m in 0..40i64 {
            for device in ["ios", "android", "web"] {
                for region in ["se", "no", "dk"] {
                    let version = if m >= 30 && device == "ios" { "2.0" } else { "1.9" };
                    let orders = if m >= 30 && device == "ios" && region == "se" { 10 } else { 30 + (m % 3) };
                    text += &format!("{},{device},{region},{version},{orders},1000\n", 1_700_000_000 + 60 * m);
                }
            }
        }
        let p = dir.join("kpi.csv");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn query() -> Query {
        Query {
            measure: Measure::Ratio("orders".into(), "visits".into()),
            dims: vec!["device".into(), "region".into(), "version".into()],
            baseline: window("1700000000..1700001800").unwrap(),
            current: window("1700001800..1700002400").unwrap(),
            method: Method::Auto,
        }
    }

    fn options() -> Options {
        Options {
            kpi: "Conversion".into(),
            search: SearchKind::Ripple,
            max_attributes: 3,
            replicas: 40,
            seed: 7,
            changes: Vec::new(),
            treated: None,
            arm: None,
        }
    }

    #[test]
    fn a_report_names_the_segment_with_confidence_and_checks_the_deploy() {
        let dir = tempfile::tempdir().unwrap();
        let q = query();
        let rows = read(&data(dir.path()), &q).unwrap();
        let (cube, forecast) = table::cube(&rows, &q).unwrap();
        let deploy: Change = serde_json::from_value(
            serde_json::json!({"time": 1_700_001_790_000i64, "service": "app", "kind": "deploy", "version": "2.0"}),
        )
        .unwrap();
        // The deploy shipped the iOS app (version 2.0 has no rows before it: not a segment to
        // compare, so the treated segment is given).
        let opts = Options { changes: vec![deploy], treated: Some(vec![("device".into(), "ios".into())]), ..options() };
        let base = BaselineRef {
            name: None,
            version: None,
            window: span_text(q.baseline),
            forecast,
            data: "kpi.csv".into(),
            created: None,
        };
        let r = build(&rows, &q, &cube, base, &opts, None);
        let f = &r.explanation.findings;
        // (region=se ∧ version=2.0 names the same current leaves; the first cuboid is kept.)
        assert_eq!(
            f.iter().map(|f| f.element.as_str()).collect::<Vec<_>>(),
            vec!["device=ios&region=se"],
            "{:#?}",
            r.narrative
        );
        assert!(f[0].share > 0.9 && f[0].confidence.unwrap() >= 0.9, "{f:?}");
        assert!(r.narrative[0].starts_with("Conversion fell from 3.10 % to 2.86 %"), "{}", r.narrative[0]);
        assert!(
            r.narrative[1].contains("of the drop is explained by device=ios ∧ region=se (3.10 % → 1.00 %), confidence"),
            "{}",
            r.narrative[1]
        );
        // Its DiD against the rest is negative and significant, and it came before the
        // divergence.
        let ch = &r.changes[0];
        let did = ch.did.as_ref().unwrap();
        assert!(did.treated == "device=ios" && did.significant && did.effect < 0.0, "{did:?}");
        assert_eq!(ch.order.as_ref().unwrap().precedes, Some(true));
        assert!(chart(&r).contains("device=ios ∧ region=se") && chart(&r).starts_with("<svg"));
    }

    #[test]
    fn baselines_are_versioned_and_reports_compare() {
        let dir = tempfile::tempdir().unwrap();
        let q = query();
        let rows = read(&data(dir.path()), &q).unwrap();
        let (cube, forecast) = table::cube(&rows, &q).unwrap();
        let root = dir.path().join("baselines");
        let v1 = save_baseline(&root, "checkout", &cube, &q, "orders/visits", &forecast, "kpi.csv").unwrap();
        let v2 = save_baseline(&root, "checkout", &cube, &q, "orders/visits", &forecast, "kpi.csv").unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(load_baseline(&root, "checkout").unwrap().version, 2);
        assert_eq!(load_baseline(&root, "checkout@1").unwrap(), v1);
        assert!(load_baseline(&root, "checkout@9").unwrap_err().to_string().contains("no version 9"));
        assert!(load_baseline(&root, "../etc").is_err() && load_baseline(&root, "missing").is_err());
        // The current window against the stored forecast is the same cube.
        let again = cube_against(&rows, &q, &v1).unwrap();
        let sum = |c: &Cube| c.leaves.iter().map(|l| l.fa).sum::<f64>();
        assert!((sum(&again) - sum(&cube)).abs() < 1e-6 && again.leaves.len() == cube.leaves.len());
        let base = BaselineRef {
            name: Some("checkout".into()),
            version: Some(1),
            window: span_text(q.baseline),
            forecast,
            data: "kpi.csv".into(),
            created: Some(v1.created),
        };
        let r = build(&rows, &q, &again, base, &Options { replicas: 0, ..options() }, None);
        let earlier = Earlier {
            before: 0.03,
            after: 0.02,
            baseline: r.baseline.clone(),
            findings: vec![Finding {
                element: "device=web".into(),
                effect: 0.0,
                share: 0.5,
                before: 0.0,
                after: 0.0,
                surprise: 0.0,
                confidence: None,
            }],
        };
        let s = compare(&earlier, &r.explanation.findings);
        assert_eq!((s.new, s.gone), (vec!["device=ios&region=se".to_string()], vec!["device=web".to_string()]));
        assert!(r.narrative.iter().any(|l| l.contains("baseline checkout v1")));
    }
}
