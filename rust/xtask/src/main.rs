//! `cargo xtask [recipe…]`: the Justfile, on a machine that has only the Rust toolchain.
//!
//! The recipes need `just`, buf and the Python code generators, all pinned and installed
//! inside the checkout (`./.venv`, `./node_modules`) by `just setup`. `just` itself comes
//! from PyPI (`rust-just`), so this bootstrapper only makes `./.venv` with
//! `requirements-dev.txt` when `./.venv/bin/just` is missing, then hands its arguments to
//! `just`. It installs nothing outside the checkout.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let root = workspace_root();
    let just = root.join(".venv/bin/just");
    if !just.exists() {
        eprintln!("xtask: installing the pinned tools into .venv (requirements-dev.txt)");
        let steps: [(&str, &[&str]); 2] = [
            ("python3", &["-m", "venv", ".venv"]),
            (
                ".venv/bin/pip",
                &[
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    "requirements-dev.txt",
                ],
            ),
        ];
        for (program, args) in steps {
            if let Err(message) = run(&root, program, args) {
                eprintln!("xtask: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = Command::new(&just).args(&args).current_dir(&root).status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("xtask: just {} failed: {status}", args.join(" "));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("xtask: cannot run {}: {error}", just.display());
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: this crate lives at `rust/xtask`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run(root: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let program_path = if program.contains('/') {
        root.join(program)
    } else {
        PathBuf::from(program)
    };
    let status = Command::new(&program_path)
        .args(args)
        .current_dir(root)
        .status()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed: {status}", args.join(" ")))
    }
}
