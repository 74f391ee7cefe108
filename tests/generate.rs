//! char_lm's `--generate`: the built-in cells sample through the stepper (no tape), the other
//! layers through the tape; either way the text continues the prefix for the asked length,
//! and the same seed gives the same text. Runs the `char_lm` example that `cargo test` builds.

mod common;

use common::examples::{example, scratch, shakespeare, succeed};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Trains a small `cell` model for a few updates; returns its checkpoint.
fn trained(dir: &Path, cell: &str) -> PathBuf {
    let corpus = shakespeare(dir, 20_000);
    let out = dir.join(cell);
    let flags = "--hidden 24 --embed 8 --layers 2 --batch-size 4 --num-steps 16 --steps 12 \
                 --eval-every 6 --length 10";
    let mut command = Command::new(example("char_lm"));
    command
        .args(flags.split(' '))
        .args(["--cell", cell, "--data"])
        .arg(&corpus)
        .arg("--out")
        .arg(&out);
    succeed(command);
    out.join("latest/char_lm.safetensors")
}

fn generate(checkpoint: &Path, seed: &str) -> String {
    let mut command = Command::new(example("char_lm"));
    command
        .args([
            "--generate",
            "--length",
            "150",
            "--prefix",
            "ROMEO:",
            "--seed",
            seed,
        ])
        .arg("--checkpoint")
        .arg(checkpoint);
    succeed(command)
}

#[test]
fn stepped_and_taped_layers_continue_the_prefix_reproducibly() {
    let dir = scratch("generate");
    for cell in ["lstm", "gru", "rnn", "mingru"] {
        let checkpoint = trained(&dir, cell);
        let text = generate(&checkpoint, "3");
        assert!(text.starts_with("ROMEO:"), "{cell}: {text:?}");
        let printed = text.strip_suffix('\n').expect("a line");
        let sampled = printed.chars().count() - "ROMEO:".len();
        assert_eq!(sampled, 150, "{cell}: {text:?}");
        assert_eq!(text, generate(&checkpoint, "3"), "{cell}: the same seed");
        assert_ne!(text, generate(&checkpoint, "4"), "{cell}: another seed");
    }
    std::fs::remove_dir_all(&dir).ok();
}
