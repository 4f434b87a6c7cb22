//! `culprit drilldown` as a user runs it: CSV.gz and Parquet input, the narrative, the chart,
//! the JSON report, versioned baselines, the change checks, and bad data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn culprit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_culprit")).args(args).output().expect("culprit runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const T0: i64 = 1_700_000_000;

/// Four baseline hours and one current hour of per-minute rows for 4 devices × 3 regions ×
/// 2 arms; in the current hour, conversion in device=ios ∧ region=se falls from ~5 % to ~2 %,
/// after a deploy of the ios app at the start of the hour.
fn rows() -> Vec<(i64, &'static str, &'static str, &'static str, f64, f64)> {
    let mut out = Vec::new();
    for m in 0..300i64 {
        for (di, device) in ["ios", "android", "web", "tv"].into_iter().enumerate() {
            for (ri, region) in ["se", "no", "dk"].into_iter().enumerate() {
                for arm in ["a", "b"] {
                    let visits = 200.0 + ((m * 7 + di as i64 * 13 + ri as i64 * 5) % 17) as f64;
                    let rate = if m >= 240 && device == "ios" && region == "se" { 0.02 } else { 0.05 };
                    let wobble = ((m * 31 + di as i64 * 7 + ri as i64 * 3) % 5) as f64 - 2.0;
                    out.push((T0 + 60 * m, device, region, arm, (visits * rate + wobble).max(0.0).round(), visits));
                }
            }
        }
    }
    out
}

fn write_csv_gz(path: &Path) {
    let mut text = String::from("time,device,region,arm,orders,visits\n");
    for (t, d, r, a, o, v) in rows() {
        text += &format!("{t},{d},{r},{a},{o},{v}\n");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

fn write_parquet(path: &Path) {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let r = rows();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("timestamp", Arc::new(Int64Array::from(r.iter().map(|x| x.0).collect::<Vec<_>>()))),
        ("device", Arc::new(StringArray::from(r.iter().map(|x| x.1).collect::<Vec<_>>()))),
        ("region", Arc::new(StringArray::from(r.iter().map(|x| x.2).collect::<Vec<_>>()))),
        ("arm", Arc::new(StringArray::from(r.iter().map(|x| x.3).collect::<Vec<_>>()))),
        ("orders", Arc::new(Float64Array::from(r.iter().map(|x| x.4).collect::<Vec<_>>()))),
        ("visits", Arc::new(Float64Array::from(r.iter().map(|x| x.5).collect::<Vec<_>>()))),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn windows() -> (String, String) {
    (format!("{}..{}", T0, T0 + 240 * 60), format!("{}..{}", T0 + 240 * 60, T0 + 300 * 60))
}

#[test]
fn drilldown_explains_a_conversion_drop_from_csv_gz_and_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let (gz, pq) = (dir.path().join("kpi.csv.gz"), dir.path().join("kpi.parquet"));
    write_csv_gz(&gz);
    write_parquet(&pq);
    let (base, cur) = windows();
    let changes = dir.path().join("changes.jsonl");
    std::fs::write(
        &changes,
        format!(
            "{{\"time\": {}, \"service\": \"ios-app\", \"kind\": \"deploy\", \"version\": \"5.1\"}}\n",
            (T0 + 239 * 60) * 1000
        ),
    )
    .unwrap();
    let baselines = dir.path().join("baselines");
    let (chart, report) = (dir.path().join("chart.svg"), dir.path().join("report.json"));
    let mut args: Vec<String> = [
        "drilldown",
        "--ratio",
        "orders/visits",
        "--dims",
        "device,region,arm",
        "--baseline",
        &base,
        "--current",
        &cur,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--data".into(), gz.display().to_string()]);
    let with =
        |extra: &[&str]| -> Vec<String> { args.iter().cloned().chain(extra.iter().map(|s| s.to_string())).collect() };
    let run = |a: Vec<String>| culprit(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let first = with(&[
        "--change",
        changes.to_str().unwrap(),
        "--treated",
        "device=ios&region=se",
        "--arm",
        "arm",
        "--save-baseline",
        "checkout",
        "--baselines",
        baselines.to_str().unwrap(),
        "--chart",
        chart.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    let (ok, out, err) = run(first);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("orders/visits fell from "), "{out}");
    assert!(
        lines[0].contains("baseline checkout v1, robust: per segment, the mean of the 4 baseline windows"),
        "{out}"
    );
    assert!(
        lines[1].contains("of the drop is explained by device=ios ∧ region=se") && lines[1].contains("confidence 1.00"),
        "{out}"
    );
    assert!(
        out.contains("Difference-in-differences, device=ios ∧ region=se against the rest: -0.0")
            && out.contains("Temporal order holds"),
        "{out}"
    );
    assert!(out.contains("Sample ratio across the values of arm: χ² 0.00, p = 1.000, as planned"), "{out}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("device=ios ∧ region=se"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["findings"][0]["element"], "device=ios&region=se");
    assert_eq!(json["baseline"]["version"], 1);
    assert!(baselines.join("checkout/v1.json").is_file());

    // Parquet gives the same findings.
    let mut pq_args = args.clone();
    let n = pq_args.len();
    pq_args[n - 1] = pq.display().to_string();
    pq_args.push("--json".into());
    let (ok, out, err) = run(pq_args);
    assert!(ok, "{err}");
    let pq_json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(pq_json["findings"], json["findings"]);

    // Against the stored baseline, compared with the first report.
    let (ok, out, err) = culprit(&[
        "drilldown",
        "--data",
        gz.to_str().unwrap(),
        "--ratio",
        "orders/visits",
        "--dims",
        "device,region,arm",
        "--current",
        &cur,
        "--against",
        "checkout@1",
        "--baselines",
        baselines.to_str().unwrap(),
        "--compare",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("baseline checkout v1")
            && out.contains("Since the earlier report")
            && out.contains("new none; gone none"),
        "{out}"
    );
    let (ok, _, err) = culprit(&[
        "drilldown",
        "--data",
        gz.to_str().unwrap(),
        "--metric",
        "orders",
        "--dims",
        "device",
        "--current",
        &cur,
        "--against",
        "nope",
        "--baselines",
        baselines.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no baseline named \"nope\""), "{err}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_data_ends_with_an_error_naming_the_column_and_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let (base, cur) = ("1700000000..1700000060", "1700000060..1700000120");
    let run = |file: &Path, dims: &str| {
        culprit(&[
            "drilldown",
            "--data",
            file.to_str().unwrap(),
            "--ratio",
            "orders/visits",
            "--dims",
            dims,
            "--baseline",
            base,
            "--current",
            cur,
        ])
    };
    let cases = [
        (
            "missing.csv",
            "time,device,orders,visits\n1700000010,ios,3,100\n",
            "device,region",
            "missing.csv: no dimension column \"region\" (the columns are: time, device, orders, visits)",
        ),
        (
            "text.csv",
            "time,device,orders,visits\n1700000010,ios,3,100\n1700000070,ios,3 orders,100\n",
            "device",
            "text.csv:3: column \"orders\": \"3 orders\" is not a number",
        ),
        (
            "empty.csv",
            "time,device,orders,visits\n1700000070,ios,3,100\n",
            "device",
            "empty.csv: the baseline window (2023-11-14T22:13:20Z..2023-11-14T22:14:20Z) has no rows",
        ),
        (
            "ragged.csv",
            "time,device,orders,visits\n1700000010,ios,3,100\n1700000070,ios\n",
            "device",
            "ragged.csv: line 3",
        ),
        ("nothing.csv", "", "device", "nothing.csv: no time column"),
    ];
    for (name, text, dims, want) in cases {
        let p = write(dir.path(), name, text);
        let (ok, _, err) = run(&p, dims);
        assert!(!ok && err.contains(want) && !err.contains("panicked"), "{name}: {err}");
    }
    let p = write(dir.path(), "garbage.parquet", "not parquet");
    let (ok, _, err) = run(&p, "device");
    assert!(!ok && err.contains("garbage.parquet: not a readable Parquet file"), "{err}");
    let (ok, _, err) = culprit(&[
        "drilldown",
        "--data",
        "/nonexistent.csv",
        "--metric",
        "x",
        "--dims",
        "d",
        "--baseline",
        base,
        "--current",
        "tomorrow..later",
    ]);
    assert!(!ok && err.contains("--current \"tomorrow\" is not a time"), "{err}");
}
