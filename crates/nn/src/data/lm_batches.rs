//! Language-model minibatches from one long token stream, the two ways of the notes (d2l
//! §8.3): random sampling (each minibatch from random offsets, no relation between batches, so
//! the hidden state starts afresh) and sequential partitioning (row b of one minibatch
//! continues row b of the previous one, so the hidden state is carried across).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Inputs and next-token targets, time-major: `inputs[t * batch + b]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LmBatch {
    /// Token ids, `steps × batch`, time-major.
    pub inputs: Vec<usize>,
    /// The next token of each input, laid out the same.
    pub targets: Vec<usize>,
    /// Rows B.
    pub batch: usize,
    /// Time steps T.
    pub steps: usize,
}

impl LmBatch {
    fn from_rows(rows: &[&[usize]], targets: &[&[usize]], steps: usize) -> Self {
        let batch = rows.len();
        let time_major = |rs: &[&[usize]]| {
            (0..steps)
                .flat_map(|t| rs.iter().map(move |r| r[t]))
                .collect()
        };
        LmBatch {
            inputs: time_major(rows),
            targets: time_major(targets),
            batch,
            steps,
        }
    }
}

/// Random sampling: drop a random prefix of 0..num_steps tokens, cut the rest into
/// subsequences of `num_steps`, shuffle them, and serve `batch_size` at a time.
pub fn random_batches(
    corpus: &[usize],
    batch_size: usize,
    num_steps: usize,
    seed: u64,
) -> Vec<LmBatch> {
    assert!(
        batch_size > 0 && num_steps > 0,
        "random_batches: batch_size and num_steps must be positive"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let corpus = &corpus[rng.gen_range(0..num_steps).min(corpus.len())..];
    let subsequences = corpus.len().saturating_sub(1) / num_steps;
    let mut starts: Vec<usize> = (0..subsequences).map(|i| i * num_steps).collect();
    starts.shuffle(&mut rng);
    starts
        .chunks_exact(batch_size)
        .map(|chunk| {
            let xs: Vec<&[usize]> = chunk.iter().map(|&j| &corpus[j..j + num_steps]).collect();
            let ys: Vec<&[usize]> = chunk
                .iter()
                .map(|&j| &corpus[j + 1..j + 1 + num_steps])
                .collect();
            LmBatch::from_rows(&xs, &ys, num_steps)
        })
        .collect()
}

/// The shortest stream [`sequential_batches`] cuts at least one batch of `batch_size` rows
/// × `num_steps` steps from, whatever its seed: its random offset may take `num_steps` tokens,
/// and each row needs `num_steps` inputs and the target after the last.
pub fn min_stream_len(batch_size: usize, num_steps: usize) -> usize {
    (batch_size + 1) * num_steps + 1
}

/// Sequential partitioning: drop a random prefix of 0..=num_steps tokens, lay the rest out
/// as `batch_size` contiguous rows, and serve consecutive `num_steps`-wide column blocks.
pub fn sequential_batches(
    corpus: &[usize],
    batch_size: usize,
    num_steps: usize,
    seed: u64,
) -> Vec<LmBatch> {
    assert!(
        batch_size > 0 && num_steps > 0,
        "sequential_batches: batch_size and num_steps must be positive"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let offset = rng.gen_range(0..=num_steps).min(corpus.len());
    let per_row = corpus.len().saturating_sub(offset + 1) / batch_size;
    let row = |b: usize, shift: usize| {
        &corpus[offset + shift + b * per_row..offset + shift + (b + 1) * per_row]
    };
    (0..per_row / num_steps)
        .map(|i| {
            let cols = i * num_steps..(i + 1) * num_steps;
            let xs: Vec<&[usize]> = (0..batch_size).map(|b| &row(b, 0)[cols.clone()]).collect();
            let ys: Vec<&[usize]> = (0..batch_size).map(|b| &row(b, 1)[cols.clone()]).collect();
            LmBatch::from_rows(&xs, &ys, num_steps)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(b: &LmBatch, r: usize, which: &[usize]) -> Vec<usize> {
        (0..b.steps).map(|t| which[t * b.batch + r]).collect()
    }

    #[test]
    fn min_stream_len_gives_a_batch_for_every_seed_and_one_less_may_not() {
        let (batch, steps) = (3, 4);
        let need = min_stream_len(batch, steps);
        let corpus: Vec<usize> = (0..need).collect();
        for seed in 0..50 {
            assert!(!sequential_batches(&corpus, batch, steps, seed).is_empty());
        }
        let short = &corpus[..need - 1];
        assert!((0..50).any(|seed| sequential_batches(short, batch, steps, seed).is_empty()));
    }

    #[test]
    fn random_sampling_serves_disjoint_aligned_subsequences() {
        let corpus: Vec<usize> = (0..35).collect();
        let batches = random_batches(&corpus, 2, 5, 7);
        let offset = batches[0].inputs[0] % 5;
        let mut starts = Vec::new();
        for b in &batches {
            for r in 0..b.batch {
                let x = row(b, r, &b.inputs);
                assert_eq!(
                    row(b, r, &b.targets),
                    x.iter().map(|v| v + 1).collect::<Vec<_>>()
                );
                assert!(x.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
                assert_eq!(
                    x[0] % 5,
                    offset,
                    "every subsequence starts at offset + k·num_steps"
                );
                starts.push(x[0]);
            }
        }
        let subsequences = (35 - offset - 1) / 5;
        assert_eq!(batches.len(), subsequences / 2);
        starts.sort();
        starts.dedup();
        assert_eq!(
            starts.len(),
            2 * batches.len(),
            "no subsequence served twice"
        );
    }

    #[test]
    fn sequential_rows_continue_across_minibatches() {
        let corpus: Vec<usize> = (0..35).collect();
        let batches = sequential_batches(&corpus, 2, 5, 3);
        assert!(!batches.is_empty());
        for w in batches.windows(2) {
            for r in 0..2 {
                let (a, b) = (row(&w[0], r, &w[0].inputs), row(&w[1], r, &w[1].inputs));
                assert_eq!(b[0], a[4] + 1, "row {r} continues where it stopped");
            }
        }
        let first = &batches[0];
        let (r0, r1) = (row(first, 0, &first.inputs), row(first, 1, &first.inputs));
        let per_row = r1[0] - r0[0];
        assert_eq!(
            per_row,
            (35 - r0[0] - 1) / 2,
            "rows are contiguous halves of the corpus"
        );
        assert_eq!(
            row(first, 0, &first.targets),
            r0.iter().map(|v| v + 1).collect::<Vec<_>>()
        );
    }

    #[test]
    fn too_short_a_corpus_gives_no_batches() {
        assert!(random_batches(&[1, 2, 3], 4, 5, 0).is_empty());
        assert!(sequential_batches(&[1, 2, 3], 4, 5, 0).is_empty());
    }
}
