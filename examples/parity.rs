//! Checks recurrent layers against PyTorch fixtures written by torch_fixtures.py.
//!
//!     cargo run --release --example parity -- tests/fixtures/rnn/*.safetensors
//!
//! Prints the worst relative error per tensor (f64) and exits non-zero if any exceeds 1e-10
//! or a fixture cannot be read.

use recur::nn::parity::run_fixture;
use std::path::Path;
use std::process::ExitCode;

const TOLERANCE: f64 = 1e-10;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: parity FIXTURE.safetensors...");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for file in &files {
        match run_fixture::<f64>(Path::new(file)) {
            Ok(report) => {
                let ok = report.worst() <= TOLERANCE;
                failed |= !ok;
                println!("{} {file}", if ok { "PASS" } else { "FAIL" });
                println!("  config: {}", report.config);
                for c in &report.comparisons {
                    let flag = if c.rel_error <= TOLERANCE {
                        ""
                    } else {
                        "   <-- exceeds 1e-10"
                    };
                    println!("  {:<28} {:.3e}{flag}", c.name, c.rel_error);
                }
            }
            Err(e) => {
                failed = true;
                println!("ERROR {file}");
                eprintln!("error: {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
