//! The truncated-BPTT driver: the state carries across updates, and gradients stop exactly
//! at the truncation point (checked against explicit computations).

use rand::SeedableRng;
use recur::nn::data::{sequential_batches, LmBatch};
use recur::nn::optim::Optimizer;
use recur::nn::tbptt::{StreamModel, Tbptt, TbpttOptions};
use recur::nn::{
    Embedding, Linear, Mode, Nonlinearity, ParamGrads, ParamStore, Rnn, RnnOptions, Session,
};
use recur::tape::{Reduction, Tape, Tensor, Var};
use std::sync::Mutex;

struct TinyLm {
    emb: Embedding,
    rnn: Rnn,
    out: Linear,
}

impl StreamModel<f64> for TinyLm {
    fn forward<'t>(
        &self,
        s: &Session<'t, '_, f64>,
        inputs: &[usize],
        batch: usize,
        state: Option<&[Var<'t, f64>]>,
    ) -> (Var<'t, f64>, Vec<Var<'t, f64>>) {
        let steps = inputs.len() / batch;
        let x = self.emb.forward(s, inputs).reshape(&[steps, batch, 3]);
        let init: Option<Vec<Var<f64>>> =
            state.map(|st| st.iter().map(|v| v.reshape(&[1, batch, 4])).collect());
        let out = self.rnn.forward(s, x, init.as_deref(), None);
        let logits = self.out.forward(s, out.output.reshape(&[steps * batch, 4]));
        (logits, vec![out.h_n().reshape(&[batch, 4])])
    }
}

fn model() -> (TinyLm, ParamStore<f64>) {
    let mut store = ParamStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let emb = Embedding::new(&mut store, "emb", 5, 3, None, &mut rng);
    let rnn = Rnn::new(
        &mut store,
        "rnn",
        RnnOptions::new(3, 4),
        Nonlinearity::Tanh,
        &mut rng,
    );
    let out = Linear::new(&mut store, "out", 4, 5, true, &mut rng);
    (TinyLm { emb, rnn, out }, store)
}

/// Keeps the gradients it is given and leaves the parameters alone.
#[derive(Default)]
struct Recorder(Mutex<Vec<ParamGrads<f64>>>);

impl Optimizer<f64> for Recorder {
    fn step(&mut self, _: &mut ParamStore<f64>, grads: &ParamGrads<f64>) {
        self.0.lock().unwrap().push(grads.clone());
    }
    fn lr(&self) -> f64 {
        0.0
    }
    fn set_lr(&mut self, _: f64) {}
    fn state_tensors(&self, _: &ParamStore<f64>) -> Vec<(String, Tensor<f64>)> {
        Vec::new()
    }
    fn load_state_tensors(&mut self, _: &ParamStore<f64>, _: &[(String, Tensor<f64>)]) {}
}

fn stream() -> Vec<usize> {
    (0..200).map(|i| (i * 7 + i / 3) % 5).collect()
}

/// Mean loss of the last `k1` steps of `window`, starting from `start` (zeros if None),
/// and its gradients.
fn explicit(
    model: &TinyLm,
    store: &ParamStore<f64>,
    window: &[LmBatch],
    k1: usize,
    start: Option<&Tensor<f64>>,
) -> (f64, ParamGrads<f64>) {
    let batch = window[0].batch;
    let inputs: Vec<usize> = window.iter().flat_map(|c| c.inputs.clone()).collect();
    let targets = &window.last().unwrap().targets;
    let tape = Tape::new();
    let s = Session::new(&tape, store, Mode::Train, 0);
    let init = start.map(|t| vec![tape.constant(t.clone())]);
    let (logits, _) = model.forward(&s, &inputs, batch, init.as_deref());
    let steps = inputs.len() / batch;
    let loss = logits
        .slice(0, (steps - k1) * batch..steps * batch)
        .cross_entropy(targets, None, Reduction::Mean);
    (loss.item(), s.backward(loss))
}

/// The final state after running `chunks` from zeros.
fn state_after(model: &TinyLm, store: &ParamStore<f64>, chunks: &[LmBatch]) -> Tensor<f64> {
    let inputs: Vec<usize> = chunks.iter().flat_map(|c| c.inputs.clone()).collect();
    let tape = Tape::new();
    let s = Session::new(&tape, store, Mode::Eval, 0);
    let (_, state) = model.forward(&s, &inputs, chunks[0].batch, None);
    state[0].to_tensor()
}

fn options(k1: usize, k2: usize, threads: usize) -> TbpttOptions {
    TbpttOptions {
        k1,
        k2,
        clip: None,
        shards: 1,
        threads,
        seed: 0,
        ..TbpttOptions::default()
    }
}

#[test]
fn state_carries_across_updates() {
    let (model, mut store) = model();
    let chunks = sequential_batches(&stream(), 2, 4, 1);
    let mut driver = Tbptt::new(options(4, 4, 1));
    let mut rec = Recorder::default();
    let reports: Vec<_> = chunks[..3]
        .iter()
        .map(|c| driver.step(&model, &mut store, &mut rec, c).unwrap())
        .collect();
    // Update 3 sees only chunk 2 but starts from the state after chunks 0 and 1.
    let start = state_after(&model, &store, &chunks[..2]);
    let (loss, grads) = explicit(&model, &store, &chunks[2..3], 4, Some(&start));
    assert!(
        (reports[2].loss - loss).abs() < 1e-12,
        "{} vs {loss}",
        reports[2].loss
    );
    let recorded = &rec.0.lock().unwrap()[2];
    for (id, g) in grads.iter() {
        assert!(recorded.get(id).unwrap().max_abs_diff(g) < 1e-12);
    }
}

#[test]
fn gradients_flow_through_exactly_the_last_k2_steps() {
    let (model, mut store) = model();
    let chunks = sequential_batches(&stream(), 2, 3, 2);
    let mut driver = Tbptt::new(options(3, 6, 2));
    let mut rec = Recorder::default();
    for c in &chunks[..4] {
        driver.step(&model, &mut store, &mut rec, c).unwrap();
    }
    let recorded = rec.0.lock().unwrap();
    // Update 4 (index 3): the window is chunks 2..4, starting from the state after chunks 0..2.
    let start = state_after(&model, &store, &chunks[..2]);
    let (_, truncated) = explicit(&model, &store, &chunks[2..4], 3, Some(&start));
    // Full BPTT from the stream's start gives a different gradient.
    let (_, full) = explicit(&model, &store, &chunks[..4], 3, None);
    let w = store.find("rnn.weight_hh_l0").unwrap();
    assert!(
        recorded[3]
            .get(w)
            .unwrap()
            .max_abs_diff(truncated.get(w).unwrap())
            < 1e-12
    );
    assert!(
        recorded[3]
            .get(w)
            .unwrap()
            .max_abs_diff(full.get(w).unwrap())
            > 1e-6
    );
    // Update 2 (index 1) still reaches back to the stream's start: chunks 0..2 from zeros.
    let (_, early) = explicit(&model, &store, &chunks[..2], 3, None);
    assert!(
        recorded[1]
            .get(w)
            .unwrap()
            .max_abs_diff(early.get(w).unwrap())
            < 1e-12
    );
}

#[test]
fn a_nan_loss_stops_training_with_the_step() {
    let (model, mut store) = model();
    let w = store.find("out.bias").unwrap();
    store.get_mut(w).data_mut()[0] = f64::NAN;
    let chunks = sequential_batches(&stream(), 2, 4, 1);
    let mut driver = Tbptt::new(options(4, 4, 1));
    let err = driver
        .step(&model, &mut store, &mut Recorder::default(), &chunks[0])
        .unwrap_err();
    assert_eq!(err.step, 0);
    assert!(
        err.to_string().contains("training stopped at step 0"),
        "{err}"
    );
}

/// Saving the driver, the parameters and Adam mid-stream and restoring them into fresh ones
/// continues bit for bit (k2 = 2·k1, two shards, so the remembered inputs and states of both
/// windows travel through the file).
#[test]
fn a_saved_and_restored_run_continues_bit_for_bit() {
    use recur::nn::optim::{Adam, AdamOptions};
    use recur::nn::train_state::TrainState;
    let options = TbpttOptions {
        k1: 4,
        k2: 8,
        clip: Some(0.5),
        shards: 2,
        threads: 2,
        seed: 9,
        ..TbpttOptions::default()
    };
    let chunks = sequential_batches(&stream(), 3, 4, 0);
    assert!(chunks.len() >= 10);
    let run = |from: usize, state: Option<&TrainState>| {
        let (m, mut store) = model();
        let mut opt = Adam::new(AdamOptions::adam(0.01));
        let mut driver = Tbptt::new(options);
        if let Some(state) = state {
            state.restore_params(&mut store, &mut opt).unwrap();
            driver.load_state(state, "tbptt", 5).unwrap();
        }
        let mut losses = Vec::new();
        let mut saved = None;
        for (i, chunk) in chunks.iter().enumerate().skip(from) {
            if i == 5 {
                let mut s = TrainState::new();
                s.put_params(&store, &opt);
                driver.save_state(&mut s, "tbptt");
                saved = Some(s);
            }
            losses.push(driver.step(&m, &mut store, &mut opt, chunk).unwrap().loss);
        }
        let weights: Vec<u64> = store
            .iter()
            .flat_map(|(_, t)| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            .collect();
        (losses, weights, saved, driver.steps())
    };
    let (losses, weights, saved, steps) = run(0, None);
    let saved = saved.unwrap();
    let path = std::env::temp_dir().join(format!("recur-tbptt-state-{}", std::process::id()));
    saved.save(&path).unwrap();
    let loaded = TrainState::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (resumed_losses, resumed_weights, _, resumed_steps) = run(5, Some(&loaded));
    assert_eq!(resumed_steps, steps);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&resumed_losses), bits(&losses[5..]));
    assert_eq!(resumed_weights, weights);
    // A driver with another shard count, or a vocabulary the remembered tokens do not fit,
    // refuses the state.
    let mut other = Tbptt::<f64>::new(TbpttOptions {
        shards: 3,
        ..options
    });
    assert!(other.load_state(&loaded, "tbptt", 5).is_err());
    let mut small = Tbptt::<f64>::new(options);
    assert!(small.load_state(&loaded, "tbptt", 1).is_err());
}
