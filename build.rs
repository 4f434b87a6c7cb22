//! Makes the installed binary find libtorch without any environment: the directory of the libtorch
//! that tch links against (`$LIBTORCH/lib`, which `scripts/setup.sh` installs into the project's
//! venv and exports from `.venv/culprit-env.sh`) is written into the binary's run path. Without
//! it, `cargo install --path .` gives a binary that fails at start with `libtorch_cpu.so: cannot
//! open shared object file` unless that script was sourced first.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(root) = std::env::var("LIBTORCH") else {
        // tch finds libtorch some other way (a system install on the loader's path): nothing to add.
        return;
    };
    let lib = Path::new(&root).join("lib");
    if lib.is_dir() && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
