//! The model over many sentences: greedy translations in batches, beam search spread over
//! threads, and the mean loss of a set of pairs.

use rand::rngs::StdRng;
use rand::SeedableRng;
use recur::nn::parallel::{map_shards, shard_range};
use recur::nn::{Mode, ParamStore, Session};
use recur::seq2seq::{beam_search, greedy, Batch, BeamOptions, Seq2Seq, TeacherForcing};
use recur::tape::Tape;

/// Greedy translations of `sources`, in batches.
pub fn translate_greedy(
    model: &Seq2Seq,
    store: &ParamStore<f32>,
    sources: &[Vec<usize>],
    max_len: usize,
) -> Vec<Vec<usize>> {
    sources
        .chunks(64)
        .flat_map(|chunk| {
            let refs: Vec<&[usize]> = chunk.iter().map(Vec::as_slice).collect();
            greedy(model, store, &refs, max_len)
                .into_iter()
                .map(|h| h.tokens)
        })
        .collect()
}

pub fn translate_beam(
    model: &Seq2Seq,
    store: &ParamStore<f32>,
    sources: &[Vec<usize>],
    opts: BeamOptions,
    threads: usize,
) -> Vec<Vec<usize>> {
    let parts = map_shards(threads, threads, |k| {
        let range = shard_range(sources.len(), threads, k);
        sources[range]
            .iter()
            .map(|s| beam_search(model, store, s, opts).remove(0).tokens)
            .collect::<Vec<_>>()
    });
    parts.into_iter().flatten().collect()
}

/// Mean per-token cross-entropy over `pairs` with teacher forcing (no graph kept).
pub fn mean_loss(
    model: &Seq2Seq,
    store: &ParamStore<f32>,
    pairs: &[(Vec<usize>, Vec<usize>)],
) -> f64 {
    let (mut total, mut tokens) = (0.0, 0usize);
    for chunk in pairs.chunks(64) {
        let refs: Vec<(&[usize], &[usize])> = chunk
            .iter()
            .map(|(s, t)| (s.as_slice(), t.as_slice()))
            .collect();
        let batch = Batch::new(&refs);
        let tape = Tape::new();
        let s = Session::new(&tape, store, Mode::Eval, 0);
        total += tape.no_grad(|| {
            model
                .loss(
                    &s,
                    &batch,
                    &TeacherForcing::Always,
                    0,
                    &mut StdRng::seed_from_u64(0),
                )
                .item()
        }) as f64;
        tokens += batch.target_tokens();
    }
    total / tokens.max(1) as f64
}
