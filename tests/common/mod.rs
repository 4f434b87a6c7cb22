//! Shared test set-up: a real OpenAI-compatible server (llama.cpp's, through llama-cpp-python)
//! with a small real model, started on 127.0.0.1 for one test and stopped when dropped.
//! `scripts/setup.sh --llm` (run by `make test`) installs both and exports where they are.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LlmServer {
    child: Child,
    /// The server's log (model loading is verbose: a pipe nobody reads would block it).
    _log: tempfile::NamedTempFile,
    pub base_url: String,
    /// The model name the server answers to.
    pub model: String,
}

impl LlmServer {
    /// Starts the server with `extra` arguments (e.g. `--embedding true`) and waits until it
    /// answers; panics with what to do when the set-up is missing.
    pub fn start(extra: &[&str]) -> LlmServer {
        let python = std::env::var("CULPRIT_TEST_PYTHON")
            .expect("CULPRIT_TEST_PYTHON is not set: run `scripts/setup.sh --llm` and `source .venv/culprit-env.sh` (make test does both)");
        let model = std::env::var("CULPRIT_TEST_LLM_MODEL")
            .expect("CULPRIT_TEST_LLM_MODEL is not set: run `scripts/setup.sh --llm`");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut args = vec![
            "-m",
            "llama_cpp.server",
            "--model",
            &model,
            "--host",
            "127.0.0.1",
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
        ];
        let port_s = port.to_string();
        args.extend(["--port", &port_s, "--model_alias", "test-model"]);
        args.extend(extra);
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let mut child = Command::new(&python)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python} -m llama_cpp.server: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("the LLM server exited ({status}) before answering:\n{err}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let err = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("the LLM server did not answer on {addr} within 120 s; its log:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        LlmServer { child, _log: log, base_url: format!("http://127.0.0.1:{port}/v1"), model: "test-model".to_string() }
    }
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
