//! Shared test set-up: a real OpenAI-compatible server (llama.cpp's, through llama-cpp-python)
//! with a small real model, started on 127.0.0.1 for one test and stopped when dropped.
//! `scripts/setup.sh --llm` (run by `make test`) installs both and exports where they are.

#![allow(dead_code)]

pub mod serve;

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

/// A pass-through HTTP proxy in front of a server that keeps every request body it forwarded: what
/// culprit put on the wire, captured before the server saw it. One request per connection.
pub struct CapturingProxy {
    pub base_url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CapturingProxy {
    /// Forwards `127.0.0.1:<new port>` to `upstream` (a base URL such as `http://127.0.0.1:8080/v1`).
    pub fn start(upstream: &str) -> CapturingProxy {
        use std::io::{Read, Write};
        let rest = upstream.strip_prefix("http://").expect("an http:// upstream");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream_addr = host.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream_addr, kept) = (upstream_addr.clone(), kept.clone());
                std::thread::spawn(move || {
                    let mut client = client;
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    // Headers, then as much body as Content-Length says.
                    let (head_end, length) = loop {
                        let Ok(n) = client.read(&mut chunk) else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..at]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                                .unwrap_or(0usize);
                            break (at + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        match client.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    kept.lock().expect("the capture").push(String::from_utf8_lossy(&buf[head_end..]).into_owned());
                    // Ask the upstream to close after answering, so its answer ends at EOF (and
                    // the client, told so too, does not reuse this connection).
                    let head = String::from_utf8_lossy(&buf[..head_end]);
                    let mut head: String = head
                        .split("\r\n")
                        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
                        .map(|l| format!("{l}\r\n"))
                        .collect();
                    head.push_str("Connection: close\r\n\r\n");
                    // The server may still be loading its model: an empty answer is retried.
                    let mut answer = Vec::new();
                    for _ in 0..120 {
                        if let Ok(mut up) = TcpStream::connect(&upstream_addr) {
                            let _ = up.write_all(head.as_bytes());
                            let _ = up.write_all(&buf[head_end..]);
                            let _ = up.read_to_end(&mut answer);
                        }
                        if !answer.is_empty() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    let _ = client.write_all(&answer);
                });
            }
        });
        CapturingProxy { base_url: format!("http://127.0.0.1:{port}/{path}"), bodies }
    }

    /// Every request body forwarded so far, joined.
    pub fn captured(&self) -> String {
        self.bodies.lock().expect("the capture").join("\n")
    }

    pub fn requests(&self) -> usize {
        self.bodies.lock().expect("the capture").len()
    }
}
