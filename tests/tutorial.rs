//! The cells and the op of docs/custom-cell.md (tutorial/src, a crate of a user's own that
//! depends on recur alone): each gradchecked in f64 and matched against a PyTorch per-step
//! reference (tests/fixtures/tutorial.safetensors from tools/tutorial_fixtures.py, ≤ 1e-10);
//! the crate builds outside the workspace; the guide shows the sources as they are.

#[path = "../tutorial/src/cells.rs"]
mod cells;
#[path = "../tutorial/src/mish.rs"]
mod mish;

use cells::{IndRnn, LayerNormLstm, Mgu, PeepholeLstm};
use mish::MishExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::checkpoint::{self, TensorFile};
use recur::nn::{gradcheck_params, Cell, Mode, ParamStore, Recurrent, RnnOptions, Session};
use recur::tape::{Tape, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixtures() -> TensorFile {
    let path = PathBuf::from(ROOT).join("tests/fixtures/tutorial.safetensors");
    checkpoint::read(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn get(file: &TensorFile, name: &str) -> Tensor<f64> {
    let t = file
        .get(name)
        .unwrap_or_else(|| panic!("fixture lacks {name}"));
    t.to_float().unwrap()
}

fn assert_close(what: &str, ours: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(ours.shape(), want.shape(), "{what}: shape");
    let scale = want.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = ours.max_abs_diff(want) / scale.max(1e-300);
    assert!(err <= 1e-10, "{what}: relative error {err:.3e}");
}

type Make<C> = fn(&mut ParamStore<f64>, &str, (usize, usize), &mut StdRng) -> C;

/// Cell `name` as a one-layer `Recurrent` against the fixture: outputs, final states, and
/// the gradients of the input, the initial state and every parameter.
fn matches_pytorch<C: Cell<f64> + Clone + 'static>(name: &str, make: Make<C>) {
    let file = fixtures();
    let x = get(&file, &format!("{name}.x"));
    let (steps, batch, input) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let hidden = get(&file, &format!("{name}.g_out")).shape()[2];
    let mut store = ParamStore::new();
    let cell = make(
        &mut store,
        name,
        (input, hidden),
        &mut StdRng::seed_from_u64(0),
    );
    for id in store.ids().collect::<Vec<_>>() {
        let param = store.name(id).to_string();
        *store.get_mut(id) = get(&file, &param);
    }
    let layer = Recurrent::build(RnnOptions::new(input, hidden), "tutorial", |_, _, _| {
        cell.clone()
    });
    let parts: Vec<&str> = ["h", "c"][..cell.state_sizes().len()].to_vec();
    let tape = Tape::new();
    let s = Session::new(&tape, &store, Mode::Train, 0);
    let xv = tape.var(x);
    let init: Vec<_> = parts
        .iter()
        .map(|p| tape.var(get(&file, &format!("{name}.{p}0")).reshape(&[1, batch, hidden])))
        .collect();
    let out = layer.forward(&s, xv, Some(&init), None);
    let mut loss = (out.output * tape.constant(get(&file, &format!("{name}.g_out")))).sum();
    for (k, p) in parts.iter().enumerate() {
        let g = get(&file, &format!("{name}.g_{p}")).reshape(&[1, batch, hidden]);
        loss = loss + (out.final_state[k] * tape.constant(g)).sum();
        let want = get(&file, &format!("{name}.final.{p}")).reshape(&[1, batch, hidden]);
        assert_close(
            &format!("{name} final {p}"),
            &out.final_state[k].to_tensor(),
            &want,
        );
    }
    let want = get(&file, &format!("{name}.out"));
    assert_close(&format!("{name} output"), &out.output.to_tensor(), &want);
    assert_eq!(steps, want.shape()[0]);
    let grads = tape.backward(loss);
    assert_close(
        &format!("{name} ∂x"),
        &grads.wrt(xv),
        &get(&file, &format!("grad.{name}.x")),
    );
    for (p, v) in parts.iter().zip(&init) {
        let want = get(&file, &format!("grad.{name}.{p}0")).reshape(&[1, batch, hidden]);
        assert_close(&format!("{name} ∂{p}0"), &grads.wrt(*v), &want);
    }
    for id in store.ids() {
        let param = store.name(id);
        let want = get(&file, &format!("grad.{param}"));
        assert_close(&format!("∂{param}"), &grads.wrt(s.param(id)), &want);
    }
}

/// Every parameter drawn from U(−0.8, 0.8), so that gradients are checked away from the
/// initial values (a layer norm's weights of 1 and biases of 0).
fn randomize(store: &mut ParamStore<f64>, rng: &mut StdRng) {
    for id in store.ids().collect::<Vec<_>>() {
        let shape = store.get(id).shape().to_vec();
        *store.get_mut(id) = Tensor::uniform(&shape, -0.8, 0.8, rng);
    }
}

/// Cell `make` gradchecked as one step (through `step`, which projects) and as a stacked
/// bidirectional layer with lengths (through the layer's projection of the whole sequence),
/// plain and checkpointed through time (a segment's projection at a time).
fn passes_gradcheck<C: Cell<f64> + Clone + 'static>(name: &str, make: Make<C>) {
    let rng = &mut StdRng::seed_from_u64(1);
    let mut store = ParamStore::new();
    let cell = make(&mut store, name, (3, 4), rng);
    randomize(&mut store, rng);
    let mut inputs = vec![Tensor::uniform(&[2, 3], -1.0, 1.0, rng)];
    inputs.extend(
        cell.state_sizes()
            .iter()
            .map(|&w| Tensor::uniform(&[2, w], -1.0, 1.0, rng)),
    );
    let report = gradcheck_params(&store, &inputs, |s, v| {
        let next = cell.step(s, v[0], &v[1..]);
        next.iter()
            .fold(next[0] * 0.0, |acc, &part| acc + part * 1.5)
    });
    assert!(report.passed, "{name} step: {report}");

    let mut store = ParamStore::new();
    let options = RnnOptions::new(3, 4).num_layers(2).bidirectional(true);
    let layer = Recurrent::build(options, "tutorial", |l, r, input| {
        make(&mut store, &format!("{name}{l}{r}"), (input, 4), rng)
    });
    randomize(&mut store, rng);
    let x = Tensor::uniform(&[4, 2, 3], -1.0, 1.0, rng);
    let mut checkpointed = layer.clone();
    checkpointed.options.checkpoint = true;
    for (how, layer) in [("layer", &layer), ("checkpointed layer", &checkpointed)] {
        let report = gradcheck_params(&store, std::slice::from_ref(&x), |s, v| {
            layer.forward(s, v[0], None, Some(&[4, 3])).output
        });
        assert!(report.passed, "{name} {how}: {report}");
    }
}

#[test]
fn mgu_matches_pytorch_and_passes_gradcheck() {
    matches_pytorch("mgu", Mgu::new);
    passes_gradcheck("mgu", Mgu::new);
}

#[test]
fn layer_norm_lstm_matches_pytorch_and_passes_gradcheck() {
    matches_pytorch("lnlstm", LayerNormLstm::new);
    passes_gradcheck("lnlstm", LayerNormLstm::new);
}

#[test]
fn indrnn_matches_pytorch_and_passes_gradcheck() {
    matches_pytorch("indrnn", IndRnn::new);
    passes_gradcheck("indrnn", IndRnn::new);
}

#[test]
fn peephole_lstm_matches_pytorch_and_passes_gradcheck() {
    matches_pytorch("peephole", PeepholeLstm::new);
    passes_gradcheck("peephole", PeepholeLstm::new);
}

#[test]
fn mish_matches_pytorch_and_passes_gradcheck() {
    let file = fixtures();
    let tape = Tape::new();
    let x = tape.var(get(&file, "mish.x"));
    let y = x.mish();
    assert_close("mish", &y.to_tensor(), &get(&file, "mish.y"));
    let loss = (y * tape.constant(get(&file, "mish.g"))).sum();
    assert_close(
        "∂mish",
        &tape.backward(loss).wrt(x),
        &get(&file, "grad.mish.x"),
    );
    let store = ParamStore::<f64>::new();
    let x = Tensor::uniform(&[3, 5], -4.0, 4.0, &mut StdRng::seed_from_u64(2));
    let report = gradcheck_params(&store, &[x], |_, v| v[0].mish());
    assert!(report.passed, "mish: {report}");
}

/// The regions `// tutorial: NAME` … `// end` of the tutorial's sources.
fn tutorial_regions() -> Vec<(String, String)> {
    let mut regions = Vec::new();
    for file in ["cells.rs", "mish.rs"] {
        let text =
            std::fs::read_to_string(Path::new(ROOT).join("tutorial/src").join(file)).unwrap();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            if let Some(name) = line.strip_prefix("// tutorial: ") {
                let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "// end").collect();
                regions.push((name.to_string(), body.join("\n")));
            }
        }
    }
    regions
}

/// docs/custom-cell.md shows each cell and the op exactly as the tested sources have them,
/// and each cell's `impl Cell` is at most 25 lines after rustfmt.
#[test]
fn the_guide_shows_the_tested_sources() {
    let guide = std::fs::read_to_string(Path::new(ROOT).join("docs/custom-cell.md")).unwrap();
    let regions = tutorial_regions();
    assert_eq!(regions.len(), 5, "the four cells and mish");
    for (name, body) in regions {
        assert!(
            guide.contains(&body),
            "docs/custom-cell.md does not show {name} as tutorial/src has it"
        );
        if name != "mish" {
            assert!(
                body.lines().count() <= 25,
                "{name}: {} lines",
                body.lines().count()
            );
        }
    }
}

/// The tutorial crate (its own workspace, `recur` its only dependency) type-checks: everything
/// a cell needs is reachable through `recur` (`recur::smallvec`, `recur::rand`).
#[test]
fn the_tutorial_builds_as_a_crate_of_its_own() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(ROOT);
    let output = Command::new(cargo)
        .args(["check", "--offline", "--quiet", "--manifest-path"])
        .arg(root.join("tutorial/Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target/tutorial"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "the tutorial crate does not build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
