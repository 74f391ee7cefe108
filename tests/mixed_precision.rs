//! bf16 mixed precision end to end: char_lm `--bf16` trains to within 2% of f32's validation
//! perplexity after the same steps, while its losses show the products really were rounded;
//! its training state is refused by a resume without the flag. Runs the `char_lm` example
//! that `cargo test` builds.

mod common;

use common::examples::{example, scratch, shakespeare, succeed};
use std::path::Path;
use std::process::Command;

/// A small char_lm run on the first 40k characters of tinyshakespeare, with `extra` flags.
fn char_lm(dir: &Path, name: &str, extra: &[&str]) -> Command {
    let corpus = shakespeare(dir, 40_000);
    let flags = "--hidden 64 --embed 16 --layers 2 --batch-size 8 --num-steps 32 --steps 150 \
                 --eval-every 75 --log-every 25 --length 20 --threads 2";
    let mut command = Command::new(example("char_lm"));
    command
        .args(flags.split(' '))
        .args(extra)
        .arg("--data")
        .arg(&corpus)
        .arg("--out")
        .arg(dir.join(name));
    command
}

/// The validation perplexities and training losses the run printed.
fn figures(stdout: &str) -> (Vec<f64>, Vec<String>) {
    let valid = stdout
        .lines()
        .filter_map(|l| l.split("valid perplexity ").nth(1))
        .map(|v| v.split(' ').next().unwrap().parse().expect("a perplexity"))
        .collect();
    let losses = stdout
        .lines()
        .filter(|l| l.contains(": loss "))
        .map(|l| l.split("; ").next().unwrap().to_string())
        .collect();
    (valid, losses)
}

#[test]
fn bf16_training_ends_within_two_percent_of_f32_and_resumes_only_as_bf16() {
    let dir = scratch("mixed-precision");
    let (f32_valid, f32_losses) = figures(&succeed(char_lm(&dir, "f32", &[])));
    let (bf16_valid, bf16_losses) = figures(&succeed(char_lm(&dir, "bf16", &["--bf16"])));
    let (f, b) = (*f32_valid.last().unwrap(), *bf16_valid.last().unwrap());
    assert!(
        (b - f).abs() <= 0.02 * f,
        "valid perplexity: bf16 {b} against f32 {f}"
    );
    assert_ne!(f32_losses, bf16_losses, "--bf16 changed no loss");
    // The state of the bf16 run resumes only with --bf16.
    let state = dir.join("bf16/latest/state.safetensors");
    let out = char_lm(&dir, "again", &["--resume", state.to_str().unwrap()])
        .output()
        .expect("char_lm runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("bf16"), "{said}");
    succeed(char_lm(
        &dir,
        "again",
        &["--bf16", "--resume", state.to_str().unwrap()],
    ));
    std::fs::remove_dir_all(&dir).ok();
}
