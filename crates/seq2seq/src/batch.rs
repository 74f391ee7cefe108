//! Sentence-pair batches: bucketed by source length, padded, time-major, with per-row
//! lengths; decoder inputs start with `<bos>` and targets end with `<eos>`.

use rand::seq::SliceRandom;
use rand::Rng;

/// The id of `<pad>`, which fills rows past their length.
pub const PAD: usize = 0;
/// The id of `<bos>`, the decoder's first input.
pub const BOS: usize = 1;
/// The id of `<eos>`, which ends every target.
pub const EOS: usize = 2;
/// The id of `<unk>`, for tokens outside the vocabulary.
pub const UNK: usize = 3;
/// Reserved token names, in id order, for `Vocab::build`.
pub const SPECIALS: [&str; 4] = ["<pad>", "<bos>", "<eos>", "<unk>"];

/// A padded batch of (source, target) pairs, time-major: `src[t * rows + b]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Sentence pairs B.
    pub rows: usize,
    /// Source ids `[src_steps · rows]`, time-major, padded with [`PAD`].
    pub src: Vec<usize>,
    /// The longest source's length.
    pub src_steps: usize,
    /// Each source's length.
    pub src_lengths: Vec<usize>,
    /// `<bos> y₁ … yₙ`, padded.
    pub tgt_in: Vec<usize>,
    /// `y₁ … yₙ <eos>`, padded.
    pub tgt_out: Vec<usize>,
    /// The longest target's length plus one.
    pub tgt_steps: usize,
}

impl Batch {
    /// Pads the pairs into one batch; targets may be empty (for decoding only).
    pub fn new(pairs: &[(&[usize], &[usize])]) -> Self {
        assert!(!pairs.is_empty(), "Batch::new: no pairs");
        let rows = pairs.len();
        let src_lengths: Vec<usize> = pairs.iter().map(|(s, _)| s.len()).collect();
        assert!(
            src_lengths.iter().all(|&l| l > 0),
            "Batch::new: empty source sentence"
        );
        let src_steps = *src_lengths.iter().max().expect("non-empty");
        let tgt_steps = pairs
            .iter()
            .map(|(_, t)| t.len() + 1)
            .max()
            .expect("non-empty");
        let mut src = vec![PAD; src_steps * rows];
        let mut tgt_in = vec![PAD; tgt_steps * rows];
        let mut tgt_out = vec![PAD; tgt_steps * rows];
        for (b, (s, t)) in pairs.iter().enumerate() {
            for (i, &id) in s.iter().enumerate() {
                src[i * rows + b] = id;
            }
            tgt_in[b] = BOS;
            for (i, &id) in t.iter().enumerate() {
                tgt_in[(i + 1) * rows + b] = id;
                tgt_out[i * rows + b] = id;
            }
            tgt_out[t.len() * rows + b] = EOS;
        }
        Batch {
            rows,
            src,
            src_steps,
            src_lengths,
            tgt_in,
            tgt_out,
            tgt_steps,
        }
    }

    /// Number of target tokens that count in the loss (including `<eos>`).
    pub fn target_tokens(&self) -> usize {
        self.tgt_out.iter().filter(|&&t| t != PAD).count()
    }

    /// Row `b`'s source ids, unpadded.
    pub fn source(&self, b: usize) -> Vec<usize> {
        (0..self.src_lengths[b])
            .map(|t| self.src[t * self.rows + b])
            .collect()
    }

    /// Row `b`'s target ids (without `<eos>`), unpadded.
    pub fn target(&self, b: usize) -> Vec<usize> {
        (0..self.tgt_steps)
            .map(|t| self.tgt_out[t * self.rows + b])
            .take_while(|&id| id != EOS && id != PAD)
            .collect()
    }

    /// Rows `range` as a batch of their own (re-padded), e.g. a data-parallel shard.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Batch {
        let pairs: Vec<(Vec<usize>, Vec<usize>)> =
            range.map(|b| (self.source(b), self.target(b))).collect();
        let refs: Vec<(&[usize], &[usize])> = pairs
            .iter()
            .map(|(s, t)| (s.as_slice(), t.as_slice()))
            .collect();
        Batch::new(&refs)
    }
}

/// Indices of `pairs` grouped into batches of similar source length: shuffled, sorted
/// stably by (source, target) length, cut into batches, and the batches shuffled.
pub fn bucket_batches(
    pairs: &[(Vec<usize>, Vec<usize>)],
    batch_size: usize,
    rng: &mut impl Rng,
) -> Vec<Vec<usize>> {
    assert!(
        batch_size > 0,
        "bucket_batches: batch size must be positive"
    );
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.shuffle(rng);
    order.sort_by_key(|&i| (pairs[i].0.len(), pairs[i].1.len()));
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    batches.shuffle(rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pads_time_major_with_bos_and_eos() {
        let b = Batch::new(&[(&[5, 6, 7][..], &[8][..]), (&[9][..], &[10, 11][..])]);
        assert_eq!((b.src_steps, b.tgt_steps, b.rows), (3, 3, 2));
        assert_eq!(b.src, vec![5, 9, 6, PAD, 7, PAD]);
        assert_eq!(b.tgt_in, vec![BOS, BOS, 8, 10, PAD, 11]);
        assert_eq!(b.tgt_out, vec![8, 10, EOS, 11, PAD, EOS]);
        assert_eq!(b.src_lengths, vec![3, 1]);
        assert_eq!(b.target_tokens(), 5);
        assert_eq!((b.source(1), b.target(1)), (vec![9], vec![10, 11]));
        assert_eq!(b.rows(1..2), Batch::new(&[(&[9][..], &[10, 11][..])]));
    }

    #[test]
    fn buckets_cover_every_pair_once_with_similar_lengths() {
        let pairs: Vec<(Vec<usize>, Vec<usize>)> =
            (0..100).map(|i| (vec![4; 1 + i % 9], vec![4; 2])).collect();
        let batches = bucket_batches(&pairs, 16, &mut rand::rngs::StdRng::seed_from_u64(1));
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let spread = |b: &Vec<usize>| {
            b.iter().map(|&i| pairs[i].0.len()).max().unwrap()
                - b.iter().map(|&i| pairs[i].0.len()).min().unwrap()
        };
        // Each length has at least 11 pairs, so a sorted run of 16 touches at most 3 lengths.
        assert!(batches.iter().all(|b| spread(b) <= 2));
    }
}
