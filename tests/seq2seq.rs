//! seq2seq: gradients of every context mode and attention type, decoding properties (beam
//! width 1 = greedy, beam search = brute force on a toy model, padding-invariance), and a
//! small task the model must learn, with the built-in GRU and with a user's cell.

use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::optim::{Adam, AdamOptions, Optimizer};
#[path = "../tutorial/src/cells.rs"]
#[allow(dead_code)] // the tutorial's other cells
mod cells;

use cells::Mgu;
use recur::nn::{gradcheck_params, Cell, CellKind, Mode, ParamStore, Session};
use recur::seq2seq::{
    beam_search, greedy, score, AttentionKind, Batch, BeamOptions, CellSlot, ContextMode, Seq2Seq,
    Seq2SeqConfig, TeacherForcing, EOS,
};
use recur::tape::{Element, Tape};

fn config(
    cell: CellKind,
    attention: Option<AttentionKind>,
    context: ContextMode,
    bidirectional: bool,
) -> Seq2SeqConfig {
    Seq2SeqConfig {
        cell,
        src_vocab: 7,
        tgt_vocab: 6,
        embed: 3,
        hidden: 4,
        layers: 1,
        bidirectional,
        attention,
        context,
        dropout: 0.0,
    }
}

fn pairs() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![4, 5, 6], vec![4, 5]),
        (vec![5], vec![5, 4, 4]),
        (vec![6, 4], vec![4]),
    ]
}

fn batch(pairs: &[(Vec<usize>, Vec<usize>)]) -> Batch {
    let refs: Vec<(&[usize], &[usize])> = pairs
        .iter()
        .map(|(s, t)| (s.as_slice(), t.as_slice()))
        .collect();
    Batch::new(&refs)
}

#[test]
fn every_context_mode_and_attention_passes_gradcheck() {
    let b = batch(&pairs());
    let cases = [
        (CellKind::Gru, None, ContextMode::InitialState, false),
        (CellKind::Gru, None, ContextMode::EveryStep, true),
        (CellKind::Lstm, None, ContextMode::Both, false),
        (
            CellKind::Gru,
            Some(AttentionKind::Bahdanau),
            ContextMode::InitialState,
            true,
        ),
        (
            CellKind::Lstm,
            Some(AttentionKind::Dot),
            ContextMode::InitialState,
            false,
        ),
        (
            CellKind::Gru,
            Some(AttentionKind::General),
            ContextMode::InitialState,
            true,
        ),
    ];
    for (cell, attention, context, bidir) in cases {
        let mut store = ParamStore::<f64>::new();
        let model = Seq2Seq::new(
            &mut store,
            config(cell, attention, context, bidir),
            &mut StdRng::seed_from_u64(1),
        );
        let report = gradcheck_params(&store, &[], |s, _| {
            model.loss(
                s,
                &b,
                &TeacherForcing::Always,
                0,
                &mut StdRng::seed_from_u64(0),
            )
        });
        assert!(
            report.passed,
            "{cell} {attention:?} {context} bidir={bidir}: {report}"
        );
        assert!(
            report.checked >= 285,
            "only {} elements checked",
            report.checked
        );
    }
}

fn random_model<T: Element>(
    attention: Option<AttentionKind>,
    seed: u64,
) -> (Seq2Seq, ParamStore<T>) {
    let mut store = ParamStore::new();
    let cfg = Seq2SeqConfig {
        hidden: 8,
        embed: 5,
        ..config(CellKind::Gru, attention, ContextMode::Both, true)
    };
    let model = Seq2Seq::new(&mut store, cfg, &mut StdRng::seed_from_u64(seed));
    (model, store)
}

#[test]
fn beam_of_width_one_equals_greedy() {
    for attention in [
        None,
        Some(AttentionKind::Bahdanau),
        Some(AttentionKind::General),
    ] {
        for seed in 0..5 {
            let (model, store) = random_model::<f64>(attention, seed);
            for (src, _) in pairs() {
                let g = greedy(&model, &store, &[&src], 6).remove(0);
                let b = beam_search(
                    &model,
                    &store,
                    &src,
                    BeamOptions {
                        width: 1,
                        alpha: 0.0,
                        max_len: 6,
                    },
                )
                .remove(0);
                assert_eq!(g.tokens, b.tokens, "seed {seed}");
                assert!((g.score - b.score).abs() < 1e-12);
                assert!(
                    (score(&model, &store, &src, &g.tokens, g.finished) - g.score).abs() < 1e-12
                );
            }
        }
    }
}

/// Every output a decoder can produce within `max_len` steps: token sequences that end with
/// `<eos>`, or reach `max_len` without it.
fn all_outputs(vocab: usize, max_len: usize) -> Vec<(Vec<usize>, bool)> {
    let mut out = Vec::new();
    let mut frontier = vec![Vec::new()];
    for len in 1..=max_len {
        let mut next = Vec::new();
        for prefix in &frontier {
            out.push((prefix.clone(), true));
            for v in (0..vocab).filter(|&v| v != EOS) {
                let mut p: Vec<usize> = prefix.clone();
                p.push(v);
                if len == max_len {
                    out.push((p, false));
                } else {
                    next.push(p);
                }
            }
        }
        frontier = next;
    }
    out
}

#[test]
fn wide_beam_finds_the_best_sequence_by_brute_force() {
    let max_len = 3;
    for alpha in [0.0, 1.0] {
        for seed in 0..3 {
            let (model, store) = random_model::<f64>(Some(AttentionKind::Bahdanau), seed);
            let src = [4, 6, 5];
            let best = all_outputs(6, max_len)
                .into_iter()
                .map(|(tokens, finished)| {
                    let s = score(&model, &store, &src, &tokens, finished);
                    let h = recur::seq2seq::Hypothesis {
                        tokens,
                        score: s,
                        finished,
                    };
                    (h.normalized(alpha), h)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap();
            let beam = beam_search(
                &model,
                &store,
                &src,
                BeamOptions {
                    width: 500,
                    alpha,
                    max_len,
                },
            )
            .remove(0);
            assert_eq!(beam.tokens, best.1.tokens, "alpha {alpha} seed {seed}");
            assert!((beam.normalized(alpha) - best.0).abs() < 1e-12);
        }
    }
}

#[test]
fn padding_does_not_change_decoding() {
    for attention in [
        None,
        Some(AttentionKind::Bahdanau),
        Some(AttentionKind::Dot),
    ] {
        let mut store = ParamStore::<f64>::new();
        let cfg = Seq2SeqConfig {
            hidden: 8,
            ..config(CellKind::Lstm, attention, ContextMode::Both, false)
        };
        let model = Seq2Seq::new(&mut store, cfg, &mut StdRng::seed_from_u64(3));
        let sources: Vec<Vec<usize>> = vec![vec![4], vec![5, 6, 4, 4, 6, 5], vec![6, 5]];
        let refs: Vec<&[usize]> = sources.iter().map(Vec::as_slice).collect();
        let batched = greedy(&model, &store, &refs, 8);
        for (src, b) in sources.iter().zip(&batched) {
            let alone = greedy(&model, &store, &[src], 8).remove(0);
            assert_eq!(alone.tokens, b.tokens);
            assert!(
                (alone.score - b.score).abs() < 1e-12,
                "{attention:?}: {} vs {}",
                alone.score,
                b.score
            );
        }
    }
}

/// Sequences of 1–4 tokens from {4..9} and their reversals, a task that needs the whole
/// source: 224 to train on, 32 to test.
type Pairs = Vec<(Vec<usize>, Vec<usize>)>;

fn reversal_data(rng: &mut StdRng) -> (Pairs, Pairs) {
    use rand::Rng;
    let mut data: Pairs = (0..256)
        .map(|_| {
            let n = rng.gen_range(1..=4);
            let s: Vec<usize> = (0..n).map(|_| rng.gen_range(4..10)).collect();
            let t = s.iter().rev().copied().collect();
            (s, t)
        })
        .collect();
    let test = data.split_off(224);
    (data, test)
}

fn reversal_config() -> Seq2SeqConfig {
    Seq2SeqConfig {
        src_vocab: 10,
        tgt_vocab: 10,
        embed: 16,
        hidden: 32,
        ..config(
            CellKind::Gru,
            Some(AttentionKind::Bahdanau),
            ContextMode::InitialState,
            true,
        )
    }
}

/// Trains `model` for 150 steps of 16 pairs and returns how many test sources it reverses
/// exactly.
fn reversed_after_training<E, D>(
    model: &Seq2Seq<E, D>,
    store: &mut ParamStore<f32>,
    (data, test): (Pairs, Pairs),
    rng: &mut StdRng,
) -> usize
where
    E: Cell<f32> + Clone + 'static,
    D: Cell<f32>,
{
    let mut opt = Adam::new(AdamOptions::adam(0.01));
    for step in 0..150 {
        let chunk = &data[(step * 16) % 224..(step * 16) % 224 + 16];
        let b = batch(chunk);
        let tape = Tape::new();
        let s = Session::new(&tape, store, Mode::Train, step as u64);
        let loss =
            model.loss(&s, &b, &TeacherForcing::Always, step, rng) / b.target_tokens() as f32;
        let mut grads = s.backward(loss);
        grads.clip_global_norm(1.0);
        opt.step(store, &grads);
    }
    let sources: Vec<&[usize]> = test.iter().map(|(s, _)| s.as_slice()).collect();
    let out = greedy(model, store, &sources, 6);
    out.iter()
        .zip(&test)
        .filter(|(h, (_, t))| &h.tokens == t)
        .count()
}

#[test]
fn learns_to_reverse_short_sequences() {
    let mut rng = StdRng::seed_from_u64(5);
    let data = reversal_data(&mut rng);
    let mut store = ParamStore::<f32>::new();
    let model = Seq2Seq::new(&mut store, reversal_config(), &mut StdRng::seed_from_u64(0));
    let correct = reversed_after_training(&model, &mut store, data, &mut rng);
    assert!(correct >= 24, "only {correct}/32 reversed exactly");
}

/// The tutorial's minimal gated unit (docs/custom-cell.md) in a seq2seq slot: its parameters
/// under the slot's prefix and suffix, `encoder.rnn_l0_reverse.u_h.weight`.
fn mgu<T: Element>(store: &mut ParamStore<T>, slot: CellSlot<'_>, rng: &mut StdRng) -> Mgu {
    let prefix = format!("{}{}", slot.prefix, slot.suffix);
    Mgu::new(store, &prefix, (slot.input, slot.hidden), rng)
}

/// A user's cell as the encoder (bidirectional, through the generic layer and its input
/// projection) and the decoder (stepped) with attention: gradchecked, and trained on the
/// reversal task as well as the built-in GRU.
#[test]
fn a_user_cell_encodes_and_decodes() {
    for (attention, context) in [
        (Some(AttentionKind::Bahdanau), ContextMode::InitialState),
        (None, ContextMode::Both),
    ] {
        let mut store = ParamStore::<f64>::new();
        let cfg = config(CellKind::Gru, attention, context, true);
        let model = Seq2Seq::build(&mut store, cfg, &mut StdRng::seed_from_u64(1), mgu, mgu);
        let b = batch(&pairs());
        let report = gradcheck_params(&store, &[], |s, _| {
            model.loss(
                s,
                &b,
                &TeacherForcing::Always,
                0,
                &mut StdRng::seed_from_u64(0),
            )
        });
        assert!(report.passed, "{attention:?} {context}: {report}");
        assert!(store.find("encoder.rnn_l0_reverse.u_h.weight").is_some());
    }

    let mut rng = StdRng::seed_from_u64(5);
    let data = reversal_data(&mut rng);
    let mut store = ParamStore::<f32>::new();
    let model = Seq2Seq::build(
        &mut store,
        reversal_config(),
        &mut StdRng::seed_from_u64(0),
        mgu,
        mgu,
    );
    let correct = reversed_after_training(&model, &mut store, data, &mut rng);
    assert!(correct >= 24, "only {correct}/32 reversed exactly");
}
