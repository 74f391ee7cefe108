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

#[test]
fn unusable_fixtures_are_errors_not_panics() {
    use recur::nn::checkpoint;
    use recur::nn::parity::ParityError;
    use std::collections::HashMap;
    let dir = std::env::temp_dir().join(format!("recur-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = fixtures()
        .into_iter()
        .find(|p| p.ends_with("lstm_1layer.safetensors"))
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        run_fixture::<f64>(&truncated),
        Err(ParityError::File(_))
    ));

    // Same tensors, but a config naming a mode that does not exist / a layer that does not fit.
    let file = checkpoint::read(&good).unwrap();
    let tensors: Vec<(String, recur::tape::Tensor<f64>)> = file
        .tensors
        .iter()
        .filter_map(|(n, t)| t.to_float().map(|t| (n.clone(), t)))
        .collect();
    let named: Vec<(String, &recur::tape::Tensor<f64>)> =
        tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    for (config, expect) in [
        (
            file.metadata["config"].replace("\"LSTM\"", "\"XLSTM\""),
            "unknown mode",
        ),
        (
            file.metadata["config"].replace("\"hidden_size\": 4", "\"hidden_size\": 5"),
            "shape",
        ),
        ("not json".to_string(), "not JSON"),
    ] {
        let path = dir.join("bad-config.safetensors");
        checkpoint::write(
            &path,
            &named,
            HashMap::from([("config".to_string(), config)]),
        )
        .unwrap();
        let err = run_fixture::<f64>(&path).expect_err("a bad config must be an error");
        assert!(err.to_string().contains(expect), "{err}");
    }
}
