//! PyTorch parity of the recurrent layers on the fixtures in tests/fixtures/rnn (written by
//! torch_fixtures.py): outputs, final states and every gradient, in f64 and f32.

use recur::nn::parity::run_fixture;
use std::path::PathBuf;

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rnn");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 9,
        "expected the PyTorch fixtures in {}",
        dir.display()
    );
    files
}

#[test]
fn every_fixture_matches_pytorch_in_f64_to_1e_10() {
    for path in fixtures() {
        let report = run_fixture::<f64>(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.comparisons.len() >= 6,
            "{}: too few tensors compared",
            path.display()
        );
        for c in &report.comparisons {
            assert!(
                c.rel_error <= 1e-10,
                "{}: {} differs by {:.2e}",
                path.display(),
                c.name,
                c.rel_error
            );
        }
    }
}

#[test]
fn every_fixture_matches_pytorch_in_f32_to_1e_4() {
    for path in fixtures() {
        let report = run_fixture::<f32>(&path).unwrap_or_else(|e| panic!("{e}"));
        for c in &report.comparisons {
            assert!(
                c.rel_error <= 1e-4,
                "{}: {} differs by {:.2e}",
                path.display(),
                c.name,
                c.rel_error
            );
        }
    }
}
