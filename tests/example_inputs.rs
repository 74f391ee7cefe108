//! The examples refuse inputs they cannot use, with a message, instead of training on nothing
//! or dropping characters (issue 22, item 6): a corpus too short for one batch, and a
//! `--prefix` with characters the corpus does not have. Runs the `char_lm` example that
//! `cargo test` builds beside this test.

mod common;

use common::examples::{example, scratch};
use std::path::Path;
use std::process::{Command, Output};

/// char_lm with a tiny model on `text`, stopping after one update.
fn char_lm(dir: &Path, text: &str, extra: &[&str]) -> Output {
    let data = dir.join("corpus.txt");
    std::fs::write(&data, text).expect("the corpus is written");
    Command::new(example("char_lm"))
        .args([
            "--hidden", "8", "--embed", "4", "--layers", "1", "--steps", "1",
        ])
        .args(["--batch-size", "2", "--num-steps", "4", "--length", "20"])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.join("out"))
        .args(extra)
        .output()
        .expect("char_lm runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_corpus_too_short_for_one_batch_is_an_error_stating_the_minimum() {
    let dir = scratch("short-corpus");
    // Two rows × four steps need 13 tokens in each part: 130 characters in all.
    let out = char_lm(&dir, &"ab".repeat(60), &[]);
    assert!(!out.status.success(), "trained on 120 characters");
    let said = stderr(&out);
    assert!(
        said.contains("has 12 characters") && said.contains("needs 13") && said.contains("130"),
        "{said}"
    );
    let out = char_lm(&dir, &"ab".repeat(65), &[]);
    assert!(
        out.status.success(),
        "130 characters suffice: {}",
        stderr(&out)
    );
}

#[test]
fn a_prefix_outside_the_vocabulary_is_an_error_naming_its_characters() {
    let dir = scratch("prefix");
    let corpus = "the cat sat on the mat. ".repeat(10);
    let out = char_lm(&dir, &corpus, &["--prefix", "the Zebra"]);
    assert!(!out.status.success(), "sampled from an unknown prefix");
    assert!(
        stderr(&out).contains("characters not in the vocabulary: 'Z', 'b', 'r'"),
        "{}",
        stderr(&out)
    );
    // Without --prefix the default "ROMEO:" is not in this corpus: the sample starts afresh.
    let out = char_lm(&dir, &corpus, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}
