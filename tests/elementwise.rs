//! The elementwise ops, reductions and broadcasts new cells use, against PyTorch's values
//! and gradients in f64 (tests/fixtures/elementwise.safetensors, from
//! tools/elementwise_fixtures.py), including the kinks (clamp at its bounds, abs and
//! leaky_relu at 0).

use recur::nn::checkpoint::{self, TensorFile};
use recur::tape::{Tape, Tensor, Var};
use std::path::PathBuf;

fn get(file: &TensorFile, name: &str) -> Tensor<f64> {
    file.get(name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"))
        .to_float()
        .unwrap()
}

#[test]
fn elementwise_ops_match_pytorch() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/elementwise.safetensors");
    let file = checkpoint::read(&path).unwrap_or_else(|e| panic!("{e}"));
    type Apply = for<'t> fn(Var<'t, f64>) -> Var<'t, f64>;
    let ops: [(&str, &str, Apply); 13] = [
        ("softplus", "input", |v| v.softplus()),
        ("sqrt", "positive", |v| v.sqrt()),
        ("sin", "input", |v| v.sin()),
        ("cos", "input", |v| v.cos()),
        ("pow", "positive", |v| v.pow(2.5)),
        ("rsqrt", "positive", |v| v.rsqrt()),
        ("log1p", "positive", |v| v.log1p()),
        ("silu", "input", |v| v.silu()),
        ("gelu", "input", |v| v.gelu()),
        ("gelu_tanh", "input", |v| v.gelu_tanh()),
        ("leaky_relu", "input", |v| v.leaky_relu(0.1)),
        ("clamp", "input", |v| v.clamp(-0.5, 0.7)),
        ("abs", "input", |v| v.abs()),
    ];
    for (name, input, apply) in ops {
        let tape = Tape::new();
        let x = tape.var(get(&file, input));
        let y = apply(x);
        let g = tape.backward((y * tape.constant(get(&file, "grad_output"))).sum());
        for (what, ours, want) in [
            ("value", y.to_tensor(), get(&file, name)),
            ("gradient", g.wrt(x), get(&file, &format!("grad.{name}"))),
        ] {
            let scale = want.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = ours.max_abs_diff(&want) / scale;
            assert!(err <= 1e-12, "{name} {what}: relative error {err:.3e}");
        }
    }
}

fn assert_close(what: &str, ours: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(ours.shape(), want.shape(), "{what}: shape");
    let scale = want.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = ours.max_abs_diff(want) / scale;
    assert!(err <= 1e-12, "{what}: relative error {err:.3e}");
}

#[test]
fn reductions_and_broadcasts_match_pytorch() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/elementwise.safetensors");
    let file = checkpoint::read(&path).unwrap_or_else(|e| panic!("{e}"));
    type Apply = for<'t> fn(&[Var<'t, f64>]) -> Var<'t, f64>;
    let cases: [(&str, &[&str], Apply); 8] = [
        ("sum_dim1_keep", &["r"], |v| v[0].sum_dim(1, true)),
        ("mean_dim2_keep", &["r"], |v| v[0].mean_dim(2, true)),
        ("max_dim1_keep", &["r"], |v| v[0].max_dim(1, true)),
        ("var_dim2_c1_keep", &["r"], |v| v[0].var_dim(2, 1, true)),
        ("var_dim0_c0", &["r"], |v| v[0].var_dim(0, 0, false)),
        ("sub_column", &["m", "c"], |v| v[0] - v[1]),
        ("div_column", &["m", "c"], |v| v[0] / (v[1].abs() + 0.5)),
        ("mul_outer", &["c", "w"], |v| v[0] * v[1]),
    ];
    for (name, args, apply) in cases {
        let tape = Tape::new();
        let vars: Vec<_> = args.iter().map(|a| tape.var(get(&file, a))).collect();
        let y = apply(&vars);
        assert_close(name, &y.to_tensor(), &get(&file, name));
        let g = tape.backward((y * tape.constant(get(&file, &format!("grad_{name}")))).sum());
        for (a, v) in args.iter().zip(&vars) {
            let key = format!("grad.{name}.{a}");
            assert_close(&key, &g.wrt(*v), &get(&file, &key));
        }
    }
}
