//! The shard-ordered gradient sum across ranks, block by block. Each parameter's gradient is
//! cut into blocks of a few hundred elements; a block whose bits are all zero (an embedding
//! row that none of a shard's tokens touched) travels as a one-byte code instead of its
//! values. Every rank learns every shard's codes first, so each knows what the others send
//! and the sums stay exactly those of dense gradients summed in shard order.

use super::Collective;
use crate::parallel::shard_range;
use crate::params::{ParamGrads, ParamStore};
use recur_tape::kernels::scratch::as_elements;
use recur_tape::{Element, Tensor};
use std::ops::Range;

/// A shard's code for a block: the shard has no gradient for the block's parameter.
const ABSENT: u8 = 0;
/// The block's values are all +0.0; they are not sent.
const ZERO: u8 = 1;
/// The block's values are sent.
const VALUES: u8 = 2;

/// The flat gradient (every parameter, end to end) cut into blocks that never straddle two
/// parameters, and shared out over the ranks that sum them.
struct Blocks {
    /// Each block's elements within its parameter.
    within: Vec<Range<usize>>,
    /// Each parameter's blocks.
    of_param: Vec<Range<usize>>,
    /// The blocks each rank sums: contiguous runs in rank order, about equal in elements.
    segments: Vec<Range<usize>>,
}

impl Blocks {
    /// Blocks of `block` elements (a parameter's last one shorter; an empty parameter has
    /// one empty block) over parameters of `lengths`, for `ranks` ranks.
    fn new(lengths: &[usize], block: usize, ranks: usize) -> Self {
        let (mut within, mut of_param, mut starts, mut at) =
            (Vec::new(), Vec::new(), Vec::new(), 0);
        for &len in lengths {
            let first = within.len();
            for start in (0..len.max(1)).step_by(block) {
                within.push(start..(start + block).min(len));
                starts.push(at + start);
            }
            of_param.push(first..within.len());
            at += len;
        }
        // Rank q sums the blocks that start inside its share of the elements.
        let first_at = |element: usize| starts.partition_point(|&s| s < element);
        let mut segments: Vec<Range<usize>> = (0..ranks)
            .map(|q| {
                let share = shard_range(at, ranks, q);
                first_at(share.start)..first_at(share.end)
            })
            .collect();
        // Empty parameters at the end start at the last element.
        if let Some(last) = segments.last_mut() {
            last.end = within.len();
        }
        Blocks {
            within,
            of_param,
            segments,
        }
    }

    fn len(&self) -> usize {
        self.within.len()
    }

    /// The parameters with blocks in `segment`, and those blocks.
    fn params_in(
        &self,
        segment: &Range<usize>,
    ) -> impl Iterator<Item = (usize, Range<usize>)> + '_ {
        let segment = segment.clone();
        self.of_param
            .iter()
            .enumerate()
            .map(move |(i, b)| (i, b.start.max(segment.start)..b.end.min(segment.end)))
            .filter(|(_, b)| !b.is_empty())
    }

    /// The elements of the blocks in `segment` that `count` picks.
    fn elements(&self, segment: &Range<usize>, count: impl Fn(usize) -> bool) -> usize {
        segment
            .clone()
            .filter(|&b| count(b))
            .map(|b| self.within[b].len())
            .sum()
    }
}

/// Buffers kept from one exchange to the next: fresh ones of this size cost a page fault
/// per 4 KiB, which took longer than the exchange itself.
#[derive(Default)]
pub(super) struct Scratch {
    send: Vec<u64>,
    recv: Vec<u64>,
    sums: Vec<u64>,
    all: Vec<u64>,
}

/// Shard `g`'s gradient for parameter `i`, if it has one.
fn grad<T: Element>(g: &Option<ParamGrads<T>>, i: usize) -> Option<&Tensor<T>> {
    g.as_ref()
        .and_then(|g| g.grads.get(i))
        .and_then(Option::as_ref)
}

/// Whether every bit of `values` is zero (all +0.0).
fn zero_bits<T: Element>(values: &[T]) -> bool {
    bytemuck::cast_slice::<T, u8>(values)
        .iter()
        .fold(0, |any, &b| any | b)
        == 0
}

/// The sum over all shards of every rank's local shards' gradients (`local`, in shard order;
/// `per_rank[q]` shards on rank q), made as [`ParamGrads::sum`] makes it in one process: per
/// element, the first shard with a gradient for the parameter, then each later one added in
/// shard order. The sums are written into the local shards' tensors where they have them.
/// Returns the sum and the bytes this rank sent to others.
pub(super) fn sum_in_shard_order<T: Element>(
    comm: &dyn Collective,
    mut local: Vec<Option<ParamGrads<T>>>,
    params: &ParamStore<T>,
    per_rank: &[usize],
    block: usize,
    scratch: &mut Scratch,
) -> (ParamGrads<T>, usize) {
    let (size, rank) = (comm.size(), comm.rank());
    let width = std::mem::size_of::<T>();
    let lengths: Vec<usize> = params.ids().map(|id| params.get(id).numel()).collect();
    let blocks = Blocks::new(&lengths, block, size);
    let nb = blocks.len();
    let shards: usize = per_rank.iter().sum();
    let first_shard: Vec<usize> = (0..size).map(|q| per_rank[..q].iter().sum()).collect();
    let shards_of = |q: usize| first_shard[q]..first_shard[q] + per_rank[q];
    let local_shard = |s: usize| {
        s.checked_sub(first_shard[rank])
            .filter(|&k| k < local.len())
    };

    // Every shard's code for every block, on every rank.
    let mut mine = Vec::with_capacity(local.len() * nb);
    for g in &local {
        for (i, of) in blocks.of_param.iter().enumerate() {
            match grad(g, i) {
                None => mine.resize(mine.len() + of.len(), ABSENT),
                Some(t) => mine.extend(of.clone().map(|b| {
                    match zero_bits(&t.data()[blocks.within[b].clone()]) {
                        true => ZERO,
                        false => VALUES,
                    }
                })),
            }
        }
    }
    let mut codes = vec![ABSENT; shards * nb];
    let counts: Vec<usize> = per_rank.iter().map(|s| s * nb).collect();
    comm.all_gather(&mine, &mut codes, &counts);
    let code = |s: usize, b: usize| codes[s * nb + b];
    let stored: Vec<bool> = (0..nb)
        .map(|b| (0..shards).any(|s| code(s, b) == VALUES))
        .collect();
    let sent_by = |s: usize, segment: &Range<usize>| -> usize {
        blocks.elements(segment, |b| code(s, b) == VALUES)
    };

    // Rank q gets the sent blocks of its segment from every shard of the other ranks.
    let send_counts: Vec<usize> = (0..size)
        .map(|q| match q == rank {
            true => 0,
            false => shards_of(rank)
                .map(|s| sent_by(s, &blocks.segments[q]) * width)
                .sum(),
        })
        .collect();
    let send: &mut [T] = as_elements(&mut scratch.send, send_counts.iter().sum::<usize>() / width);
    let mut at = 0;
    for (q, segment) in blocks.segments.iter().enumerate() {
        if q == rank {
            continue;
        }
        for (k, g) in local.iter().enumerate() {
            for (i, of) in blocks.params_in(segment) {
                for b in of.filter(|&b| code(first_shard[rank] + k, b) == VALUES) {
                    let values = &grad(g, i).expect("a gradient").data()[blocks.within[b].clone()];
                    send[at..at + values.len()].copy_from_slice(values);
                    at += values.len();
                }
            }
        }
    }
    let segment = blocks.segments[rank].clone();
    let recv_counts: Vec<usize> = (0..size)
        .map(|p| match p == rank {
            true => 0,
            false => shards_of(p).map(|s| sent_by(s, &segment) * width).sum(),
        })
        .collect();
    let recv: &mut [T] = as_elements(&mut scratch.recv, recv_counts.iter().sum::<usize>() / width);
    comm.all_to_all(
        bytemuck::cast_slice(send),
        &send_counts,
        bytemuck::cast_slice_mut(recv),
        &recv_counts,
    );

    // This rank's segment summed shard by shard. A block that no shard sends sums to +0.0
    // and is not stored; the others are stored in `sums`, in block order.
    let mut offset = vec![0; nb];
    let mut sums_len = 0;
    for b in segment.clone().filter(|&b| stored[b]) {
        offset[b] = sums_len;
        sums_len += blocks.within[b].len();
    }
    let sums: &mut [T] = as_elements(&mut scratch.sums, sums_len);
    let mut begun = vec![false; nb];
    let mut received = 0;
    for s in 0..shards {
        let own = local_shard(s).map(|k| &local[k]);
        for (i, of) in blocks.params_in(&segment) {
            let tensor = own.and_then(|g| grad(g, i));
            for b in of.filter(|&b| stored[b] && code(s, b) != ABSENT) {
                let within = blocks.within[b].clone();
                let sum = &mut sums[offset[b]..offset[b] + within.len()];
                let from: &[T] = match (code(s, b), tensor) {
                    (ZERO, _) => &[],
                    (_, Some(t)) => &t.data()[within],
                    (_, None) => {
                        received += sum.len();
                        &recv[received - sum.len()..received]
                    }
                };
                match (code(s, b), begun[b]) {
                    // Adding +0.0 is what the dense sum does: it turns -0.0 into +0.0.
                    (ZERO, true) => sum.iter_mut().for_each(|a| *a += T::zero()),
                    (ZERO, false) => sum.fill(T::zero()),
                    (_, true) => sum.iter_mut().zip(from).for_each(|(a, &v)| *a += v),
                    (_, false) => sum.copy_from_slice(from),
                }
                begun[b] = true;
            }
        }
    }

    // Everyone's stored sums, in block order, then the dense gradients, made in the local
    // shards' tensors where there are some.
    let counts: Vec<usize> = blocks
        .segments
        .iter()
        .map(|segment| blocks.elements(segment, |b| stored[b]) * width)
        .collect();
    let all: &mut [T] = as_elements(&mut scratch.all, counts.iter().sum::<usize>() / width);
    comm.all_gather(
        bytemuck::cast_slice(sums),
        bytemuck::cast_slice_mut(all),
        &counts,
    );
    let mut grads = ParamGrads::empty(lengths.len());
    let mut taken = 0;
    for (id, of) in params.ids().zip(&blocks.of_param) {
        let i = id.index();
        if (0..shards).all(|s| code(s, of.start) == ABSENT) {
            continue;
        }
        let mut tensor = local
            .iter_mut()
            .find_map(|g| g.as_mut().and_then(|g| g.grads.get_mut(i)?.take()))
            .unwrap_or_else(|| Tensor::zeros(params.get(id).shape()));
        let values = tensor.data_mut();
        for b in of.clone() {
            let within = blocks.within[b].clone();
            if stored[b] {
                values[within.clone()].copy_from_slice(&all[taken..taken + within.len()]);
                taken += within.len();
            } else {
                values[within].fill(T::zero());
            }
        }
        grads.set(id, tensor);
    }
    let sent = send_counts.iter().sum::<usize>() + (size - 1) * sums_len * width;
    (grads, sent)
}
