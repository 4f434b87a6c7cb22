//! The append-only audit log: one JSON line per act (who, when, what, on what, with what result).
//!
//! Every alert received, investigation started and finished, feedback, change recorded, chat
//! message, configuration read or reload and refused request is written before the response
//! goes out. The file is opened in append mode and each line is one `write`, so lines from
//! concurrent requests never interleave and nothing written is ever rewritten.

use serde::Serialize;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    who: &'a str,
    role: &'a str,
    action: &'a str,
    target: &'a str,
    detail: &'a Value,
}

impl Audit {
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Audit { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line. A failed write is logged, never fatal to the request.
    pub fn record(&self, who: &str, role: &str, action: &str, target: &str, detail: Value) {
        let line = Line {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            who,
            role,
            action,
            target,
            detail: &detail,
        };
        let mut text = match serde_json::to_string(&line) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, action, "audit line could not be encoded");
                return;
            }
        };
        text.push('\n');
        let mut f = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = f.write_all(text.as_bytes()) {
            tracing::error!(error = %e, path = %self.path.display(), action, "audit log write failed");
        }
    }
}
