//! The language model shared by char_lm and word_lm: embedding → recurrent stack → linear
//! to the vocabulary, read as a stream by the truncated-BPTT driver, and its evaluation.

use rand::Rng;
use recur::nn::data::sequential_batches;
use recur::nn::tbptt::StreamModel;
use recur::nn::{AnyLayer, Embedding, LayerKind, Linear, Mode, ParamStore, RnnOptions, Session};
use recur::tape::{Reduction, Tape, Tensor, Var};

#[derive(Clone, Debug)]
pub struct LmConfig {
    pub cell: LayerKind,
    pub vocab: usize,
    pub embed: usize,
    pub hidden: usize,
    pub layers: usize,
    pub dropout: f64,
}

pub struct RnnLm {
    pub emb: Embedding,
    pub rnn: AnyLayer,
    pub out: Linear,
}

impl RnnLm {
    pub fn new(store: &mut ParamStore<f32>, c: &LmConfig, rng: &mut impl Rng) -> Self {
        let emb = Embedding::new(store, "embedding", c.vocab, c.embed, None, rng);
        let options = RnnOptions::new(c.embed, c.hidden)
            .num_layers(c.layers)
            .dropout(c.dropout);
        let rnn = AnyLayer::new(store, "rnn", c.cell, options, rng);
        let out = Linear::new(store, "decoder", c.hidden, c.vocab, true, rng);
        RnnLm { emb, rnn, out }
    }
}

impl StreamModel<f32> for RnnLm {
    fn forward<'t>(
        &self,
        s: &Session<'t, '_, f32>,
        inputs: &[usize],
        batch: usize,
        state: Option<&[Var<'t, f32>]>,
    ) -> (Var<'t, f32>, Vec<Var<'t, f32>>) {
        let steps = inputs.len() / batch;
        let x = self
            .emb
            .forward(s, inputs)
            .reshape(&[steps, batch, self.emb.embedding_dim]);
        let x = recur::nn::Dropout::new(self.rnn.options().dropout).forward(s, x);
        let out = self.rnn.forward(s, x, state, None);
        let hidden = out.output.shape()[2];
        let y = recur::nn::Dropout::new(self.rnn.options().dropout)
            .forward(s, out.output.reshape(&[steps * batch, hidden]));
        (self.out.forward(s, y), out.final_state.to_vec())
    }
}

/// Mean cross-entropy per token over `stream`, read as `batch` sequential rows with the
/// state carried (no graph).
pub fn evaluate(
    model: &RnnLm,
    store: &ParamStore<f32>,
    stream: &[usize],
    batch: usize,
    steps: usize,
) -> f64 {
    let (mut total, mut count) = (0.0, 0usize);
    let mut state: Option<Vec<Tensor<f32>>> = None;
    for chunk in sequential_batches(stream, batch, steps, 0) {
        let tape = Tape::new();
        let s = Session::new(&tape, store, Mode::Eval, 0);
        tape.no_grad(|| {
            let init: Option<Vec<Var<f32>>> = state
                .as_ref()
                .map(|st| st.iter().map(|t| tape.constant(t.clone())).collect());
            let (logits, next) = model.forward(&s, &chunk.inputs, batch, init.as_deref());
            total += logits
                .cross_entropy(&chunk.targets, None, Reduction::Sum)
                .item() as f64;
            count += chunk.targets.len();
            state = Some(next.iter().map(|v| v.to_tensor()).collect());
        });
    }
    total / count.max(1) as f64
}

/// Prints above the progress bar, or plainly when there is no terminal to draw it on.
pub fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}
