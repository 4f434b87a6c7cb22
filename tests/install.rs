//! An installed `culprit` runs with nothing sourced: `cargo install --path . --debug` into a
//! temporary root (reusing this build's target dir, so nothing is built twice), then `culprit
//! demo` from there with an empty environment (no `LD_LIBRARY_PATH`, no `LIBTORCH`): libtorch is
//! found through the run path `build.rs` writes into the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn an_installed_binary_runs_the_demo_without_any_environment() {
    let root = tempfile::tempdir().unwrap();
    // `target/debug/culprit` → `target`.
    let exe = Path::new(env!("CARGO_BIN_EXE_culprit"));
    let target = exe.parent().and_then(Path::parent).expect("the binary sits in <target>/debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut install = Command::new(cargo);
    // What `cargo test` sets for this test process is not the user's environment: build scripts
    // that watch such a variable (ring watches CARGO_MANIFEST_DIR) would see it change and
    // rebuild half the dependencies, twice.
    for (var, _) in std::env::vars() {
        let set_by_cargo_test = var == "OUT_DIR"
            || ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_", "CARGO_TARGET_TMPDIR"]
                .iter()
                .any(|p| var.starts_with(p))
            || var == "CARGO_RUSTC_CURRENT_DIR";
        if set_by_cargo_test {
            install.env_remove(var);
        }
    }
    let install = install
        .args(["install", "--path", env!("CARGO_MANIFEST_DIR"), "--debug", "--locked", "--offline", "--bin", "culprit"])
        .arg("--root")
        .arg(root.path())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo runs");
    assert!(install.status.success(), "cargo install failed:\n{}", String::from_utf8_lossy(&install.stderr));

    let home = tempfile::tempdir().unwrap();
    let demo = Command::new(root.path().join("bin").join("culprit"))
        .arg("demo")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("TMPDIR", home.path())
        .output()
        .expect("the installed binary starts");
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(demo.status.success(), "{}\n{}", stdout, String::from_utf8_lossy(&demo.stderr));
    assert!(stdout.contains("## Root cause: auth"), "{stdout}");
}
