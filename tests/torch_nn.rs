//! PyTorch parity of single cells, Linear and optimizers, against the fixtures in
//! tests/fixtures/nn written by tools/torch_nn_fixtures.py (f64, ≤ 1e-10 relative).

use rand::SeedableRng;
use recur::nn::checkpoint::{self, TensorFile};
use recur::nn::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use recur::nn::{
    Cell, GruCell, Linear, LstmCell, Mode, Nonlinearity, ParamGrads, ParamStore, RnnCell, Session,
};
use recur::tape::{Tape, Tensor};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> (TensorFile, Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/nn")
        .join(format!("{name}.safetensors"));
    let file = checkpoint::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let cfg = serde_json::from_str(&file.metadata["config"]).unwrap();
    (file, cfg)
}

fn get(file: &TensorFile, name: &str) -> Tensor<f64> {
    file.get(name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"))
        .to_float()
        .unwrap()
}

fn assert_close(what: &str, ours: &Tensor<f64>, torch: &Tensor<f64>) {
    assert_eq!(ours.shape(), torch.shape(), "{what}: shape");
    let scale = torch
        .data()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-300);
    let err = ours.max_abs_diff(torch) / scale;
    assert!(err <= 1e-10, "{what}: relative error {err:.3e}");
}

/// Loads every parameter of `store` from the fixture under the same name.
fn load_weights(store: &mut ParamStore<f64>, file: &TensorFile) {
    for id in store.ids().collect::<Vec<_>>() {
        let name = store.name(id).to_string();
        *store.get_mut(id) = get(file, &name);
    }
}

fn check_cell<C: Cell<f64>>(name: &str, build: impl FnOnce(&mut ParamStore<f64>, &Value) -> C) {
    let (file, cfg) = fixture(name);
    let mut store = ParamStore::new();
    let cell = build(&mut store, &cfg);
    load_weights(&mut store, &file);
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Eval, 0);
    let x = tape.var(get(&file, "input"));
    let mut state = vec![tape.var(get(&file, "h0"))];
    let lstm = file.get("c0").is_some();
    if lstm {
        state.push(tape.var(get(&file, "c0")));
    }
    let next = cell.step(&s, x, &state);
    let mut loss = (next[0] * tape.constant(get(&file, "grad_h1"))).sum();
    assert_close(
        &format!("{name} h1"),
        &next[0].to_tensor(),
        &get(&file, "h1"),
    );
    if lstm {
        loss = loss + (next[1] * tape.constant(get(&file, "grad_c1"))).sum();
        assert_close(
            &format!("{name} c1"),
            &next[1].to_tensor(),
            &get(&file, "c1"),
        );
    }
    let grads = tape.backward(loss);
    assert_close(
        &format!("{name} grad.input"),
        &grads.wrt(x),
        &get(&file, "grad.input"),
    );
    assert_close(
        &format!("{name} grad.h0"),
        &grads.wrt(state[0]),
        &get(&file, "grad.h0"),
    );
    if lstm {
        assert_close(
            &format!("{name} grad.c0"),
            &grads.wrt(state[1]),
            &get(&file, "grad.c0"),
        );
    }
    for id in store.ids() {
        let gname = format!("grad.{}", store.name(id));
        assert_close(
            &format!("{name} {gname}"),
            &grads.wrt(s.param(id)),
            &get(&file, &gname),
        );
    }
}

fn dims(cfg: &Value) -> (usize, usize, bool) {
    (
        cfg["input_size"].as_u64().unwrap() as usize,
        cfg["hidden_size"].as_u64().unwrap() as usize,
        cfg["bias"].as_bool().unwrap(),
    )
}

#[test]
fn cells_match_pytorch() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for name in ["cell_rnn_tanh", "cell_rnn_relu_nobias"] {
        check_cell(name, |store, cfg| {
            let (i, h, bias) = dims(cfg);
            let nl = if cfg["nonlinearity"] == "relu" {
                Nonlinearity::Relu
            } else {
                Nonlinearity::Tanh
            };
            RnnCell::new(store, "", i, h, bias, nl, &mut rng)
        });
    }
    check_cell("cell_lstm", |store, cfg| {
        let (i, h, bias) = dims(cfg);
        LstmCell::new(store, "", i, h, bias, &mut rng)
    });
    for name in ["cell_gru", "cell_gru_nobias"] {
        check_cell(name, |store, cfg| {
            let (i, h, bias) = dims(cfg);
            GruCell::new(store, "", i, h, bias, &mut rng)
        });
    }
}

#[test]
fn linear_matches_pytorch() {
    for name in ["linear_bias", "linear_nobias"] {
        let (file, cfg) = fixture(name);
        let mut store = ParamStore::new();
        let bias = cfg["bias"].as_bool().unwrap();
        let fc = Linear::new(
            &mut store,
            "",
            6,
            4,
            bias,
            &mut rand::rngs::StdRng::seed_from_u64(0),
        );
        load_weights(&mut store, &file);
        let tape = Tape::new();
        let s = Session::new(&tape, &store, Mode::Eval, 0);
        let x = tape.var(get(&file, "input"));
        let y = fc.forward(&s, x);
        assert_close(name, &y.to_tensor(), &get(&file, "output"));
        let grads = tape.backward((y * tape.constant(get(&file, "grad_out"))).sum());
        assert_close("grad.input", &grads.wrt(x), &get(&file, "grad.input"));
        assert_close(
            "grad.weight",
            &grads.wrt(s.param(fc.weight)),
            &get(&file, "grad.weight"),
        );
        if let Some(b) = fc.bias {
            assert_close(
                "grad.bias",
                &grads.wrt(s.param(b)),
                &get(&file, "grad.bias"),
            );
        }
    }
}

fn optimizer_for(cfg: &Value) -> Box<dyn Optimizer<f64>> {
    let f = |k: &str, default: f64| cfg.get(k).and_then(Value::as_f64).unwrap_or(default);
    match cfg["kind"].as_str().unwrap() {
        "SGD" => Box::new(Sgd::new(SgdOptions {
            lr: f("lr", 0.0),
            momentum: f("momentum", 0.0),
            dampening: f("dampening", 0.0),
            weight_decay: f("weight_decay", 0.0),
            nesterov: cfg
                .get("nesterov")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })),
        kind @ ("Adam" | "AdamW") => {
            let mut o = if kind == "Adam" {
                AdamOptions::adam(f("lr", 0.0))
            } else {
                AdamOptions::adamw(f("lr", 0.0))
            };
            if let Some(b) = cfg.get("betas").and_then(Value::as_array) {
                o.betas = (b[0].as_f64().unwrap(), b[1].as_f64().unwrap());
            }
            o.eps = f("eps", o.eps);
            o.weight_decay = f("weight_decay", o.weight_decay);
            Box::new(Adam::new(o))
        }
        other => panic!("unknown optimizer {other}"),
    }
}

#[test]
fn optimizers_match_pytorch_over_five_steps() {
    for name in [
        "optim_sgd",
        "optim_sgd_momentum_wd",
        "optim_sgd_nesterov",
        "optim_adam",
        "optim_adam_wd",
        "optim_adamw",
    ] {
        let (file, cfg) = fixture(name);
        let mut store = ParamStore::new();
        for p in ["a", "b"] {
            store.add(p, get(&file, &format!("p0.{p}")));
        }
        let mut opt = optimizer_for(&cfg);
        for step in 0..cfg["steps"].as_u64().unwrap() {
            let mut grads = ParamGrads::empty(store.len());
            for id in store.ids() {
                grads.set(id, get(&file, &format!("step{step}.{}", store.name(id))));
            }
            opt.step(&mut store, &grads);
        }
        for id in store.ids() {
            let p = store.name(id).to_string();
            assert_close(
                &format!("{name} {p}"),
                store.get(id),
                &get(&file, &format!("final.{p}")),
            );
        }
    }
}
