//! A directory of incident bundles, each with a `truth.json` label (or one such bundle): the
//! shape `culprit simulate` writes and hand-labelled postmortems keep (`evals/postmortems`).

use super::{Case, Dataset, Loaded, Scoring, Suite};
use crate::eval::EvalError;
use std::path::{Path, PathBuf};

pub struct Bundles;

/// The labelled bundles in `dir`: its sub-folders with `truth.json`, and `dir` itself if it is one.
fn bundles(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("truth.json").is_file())
        .collect();
    if dir.join("truth.json").is_file() {
        dirs.push(dir.to_path_buf());
    }
    dirs.sort();
    Ok(dirs)
}

impl Dataset for Bundles {
    fn name(&self) -> &'static str {
        "labelled incident bundles"
    }

    fn form(&self) -> &'static str {
        "a directory of bundles each with truth.json"
    }

    fn scoring(&self) -> Scoring {
        Scoring::Incidents
    }

    fn recognise(&self, arg: &str) -> bool {
        let path = Path::new(arg);
        path.is_dir() && bundles(path).is_ok_and(|b| !b.is_empty())
    }

    fn list_cases(&self, arg: &str) -> Result<Vec<Suite>, EvalError> {
        let dirs =
            bundles(Path::new(arg)).map_err(|e| EvalError::Suite { path: arg.into(), message: e.to_string() })?;
        let cases = dirs
            .into_iter()
            .map(|d| {
                Case::new(
                    &Bundles,
                    d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    "bundles",
                    d,
                )
            })
            .collect();
        Ok(vec![Suite { name: arg.to_string(), scoring: Scoring::Incidents, cases }])
    }

    fn load_case(&self, case: &Case) -> Result<Loaded, EvalError> {
        let dir = case.own_key::<PathBuf>()?;
        Ok(Loaded::Incident(Box::new(crate::ingest::load_bundle(dir)?)))
    }
}
