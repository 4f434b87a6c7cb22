//! Kontrast (did this software change cause the KPI shift): `config/<name>.csv` rows (instance,
//! metric, `change_start`, `label`, `case_id`) and per-instance KPI series in `data/<name>/`.
//! Each case is a series, the change's time and whether the change caused the shift.

use super::{csv_at, header_of, AdapterError, Case, Dataset, Loaded, Scoring, Suite};
use crate::eval::EvalError;
use crate::model::Ts;
use std::path::{Path, PathBuf};

pub struct Kontrast;

#[derive(Debug, Clone)]
pub struct KontrastCase {
    pub id: String,
    pub series: PathBuf,
    pub change: Ts,
    /// The KPI was affected by an erroneous change.
    pub caused: bool,
}

impl Dataset for Kontrast {
    fn name(&self) -> &'static str {
        "Kontrast (did the change cause the KPI shift)"
    }

    fn form(&self) -> &'static str {
        ".../kontrast_software_change"
    }

    fn scoring(&self) -> Scoring {
        Scoring::ChangeImpact
    }

    fn recognise(&self, arg: &str) -> bool {
        let path = Path::new(arg);
        let Ok(config) = std::fs::read_dir(path.join("config")) else { return false };
        let kontrast = config
            .filter_map(|e| e.ok())
            .any(|e| header_of(&e.path()).is_some_and(|h| h.iter().any(|c| c == "change_start")));
        kontrast && path.join("data").is_dir()
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        let cases = kontrast_cases(Path::new(arg))?
            .into_iter()
            .map(|c| Case::new(&Kontrast, c.id.clone(), "kontrast", c))
            .collect();
        Ok(vec![Suite { name: arg.to_string(), scoring: Scoring::ChangeImpact, cases }])
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        let c = case.own_key::<KontrastCase>()?;
        Ok(Loaded::Change { series: read_series(&c.series)?, change: c.change, caused: c.caused })
    }
}

pub fn kontrast_cases(dir: &Path) -> Result<Vec<KontrastCase>, AdapterError> {
    let mut out = Vec::new();
    let config = dir.join("config");
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&config)
        .map_err(|source| AdapterError::Io { path: config.clone(), source })?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    configs.sort();
    for cfg in configs {
        let name = cfg.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let csv = |source| AdapterError::Csv { path: cfg.clone(), source };
        let mut r = csv::Reader::from_path(&cfg).map_err(csv)?;
        let headers = r.headers().map_err(csv)?.clone();
        let col = |n: &str| {
            headers
                .iter()
                .position(|h| h == n)
                .ok_or_else(|| AdapterError::MissingColumn { path: cfg.clone(), column: n.to_string() })
        };
        let (c_inst, c_metric, c_start, c_label, c_id) =
            (col("instance_name")?, col("metric")?, col("change_start")?, col("label")?, col("case_id")?);
        for (i, rec) in r.records().enumerate() {
            let bad = csv_at(&cfg, i + 2);
            let rec = rec.map_err(csv)?;
            let change = crate::ingest::time::parse_time_str(&rec[c_start])
                .ok_or_else(|| bad("change_start", format!("{:?} is not a time", &rec[c_start])))?;
            let caused = match rec[c_label].trim() {
                "1" => true,
                "0" => false,
                x => return Err(bad("label", format!("{x:?} is not 0 or 1"))),
            };
            let series = dir.join("data").join(&name).join(format!("{}${}.csv.gz", &rec[c_inst], &rec[c_metric]));
            out.push(KontrastCase { id: format!("{name}/{}", &rec[c_id]), series, change, caused });
        }
    }
    Ok(out)
}

/// A `timestamp,value` series (.csv or .csv.gz), time-sorted.
pub fn read_series(path: &Path) -> Result<Vec<(Ts, f64)>, AdapterError> {
    let reader = crate::ingest::io::open(path)?;
    let mut r = csv::Reader::from_reader(reader);
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let bad = csv_at(path, i + 2);
        let rec = rec.map_err(|source| AdapterError::Csv { path: path.to_path_buf(), source })?;
        let t = crate::ingest::time::parse_time_str(rec.get(0).unwrap_or(""))
            .ok_or_else(|| bad("timestamp", "not a time".to_string()))?;
        let v: f64 = rec
            .get(1)
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| bad("value", format!("{:?} is not a number", rec.get(1).unwrap_or(""))))?;
        out.push((t, v));
    }
    out.sort_by_key(|p| p.0);
    Ok(out)
}
