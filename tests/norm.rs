//! LayerNorm and RmsNorm against torch.nn.LayerNorm / RMSNorm (tests/fixtures/norm, from
//! tools/norm_fixtures.py; f64, ≤ 1e-10 relative): outputs and the gradients of the input and
//! every parameter, with and without the elementwise affine parameters.

use recur::nn::checkpoint::{self, TensorFile};
use recur::nn::{LayerNorm, Mode, ParamStore, RmsNorm, Session};
use recur::tape::{Tape, Tensor};
use serde_json::Value;
use std::path::PathBuf;

fn get(file: &TensorFile, name: &str) -> Tensor<f64> {
    file.get(name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"))
        .to_float()
        .unwrap()
}

fn assert_close(what: &str, ours: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(ours.shape(), want.shape(), "{what}: shape");
    let scale = want.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = ours.max_abs_diff(want) / scale.max(1e-300);
    assert!(err <= 1e-10, "{what}: relative error {err:.3e}");
}

#[test]
fn norms_match_pytorch() {
    for name in [
        "layer_norm",
        "layer_norm_no_bias",
        "layer_norm_plain",
        "rms_norm",
        "rms_norm_plain",
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/norm")
            .join(format!("{name}.safetensors"));
        let file = checkpoint::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let cfg: Value = serde_json::from_str(&file.metadata["config"]).unwrap();
        let affine = cfg["affine"].as_bool().unwrap();
        let mut store = ParamStore::<f64>::new();
        let layer = (cfg["kind"] == "layer").then(|| {
            let eps = cfg["eps"].as_f64().unwrap();
            LayerNorm::with_options(
                &mut store,
                "norm",
                6,
                eps,
                affine,
                cfg["bias"].as_bool().unwrap(),
            )
        });
        let rms = (cfg["kind"] == "rms")
            .then(|| RmsNorm::with_options(&mut store, "norm", 6, cfg["eps"].as_f64(), affine));
        for id in store.ids().collect::<Vec<_>>() {
            let n = store.name(id).to_string();
            *store.get_mut(id) = get(&file, &n);
        }
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Train, 0);
        let x = tape.var(get(&file, "input"));
        let y = match (&layer, &rms) {
            (Some(l), _) => l.forward(&s, x),
            (_, Some(r)) => r.forward(&s, x),
            _ => unreachable!("every fixture is one of the two"),
        };
        assert_close(
            &format!("{name} output"),
            &y.to_tensor(),
            &get(&file, "output"),
        );
        let params: Vec<_> = store.ids().map(|id| (id, s.param(id))).collect();
        let g = tape.backward((y * tape.constant(get(&file, "grad_output"))).sum());
        assert_close(
            &format!("{name} grad.input"),
            &g.wrt(x),
            &get(&file, "grad.input"),
        );
        for (id, v) in params {
            let n = format!("grad.{}", store.name(id));
            assert_close(&format!("{name} {n}"), &g.wrt(v), &get(&file, &n));
        }
        let expected = usize::from(affine) * (1 + usize::from(cfg["bias"].as_bool() == Some(true)));
        assert_eq!(store.len(), expected, "{name}: parameters");
    }
}
