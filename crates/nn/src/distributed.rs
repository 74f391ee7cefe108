//! Data parallelism across processes: the fixed shards of every batch are spread over the
//! ranks of a communicator in contiguous blocks, and the shards' gradients are summed in
//! shard order, so every rank gets bit for bit what one process summing all the shards gets,
//! whatever the number of ranks. The flat gradient is cut into one segment per rank; an
//! all-to-all hands each rank every shard's part of its segment, the rank sums it shard by
//! shard, and an all-gather spreads the sums: a ring allreduce's traffic (2(N−1)/N of the
//! gradient per rank), in a fixed order.
//!
//! The transport is MPI (`Mpi`, with the feature `mpi`); [`Collective`] is all the reduction needs
//! from it, and [`SingleProcess`] is the one-rank case.

use crate::parallel::shard_range;
use crate::params::{ParamGrads, ParamStore};
use recur_tape::{Element, Tensor};
use std::cell::Cell;
use std::ops::Range;
use std::time::Instant;

#[cfg(feature = "mpi")]
mod mpi_collective;
#[cfg(feature = "mpi")]
pub use mpi_collective::Mpi;

/// The collective operations of a communicator, on bytes. Every rank calls each one in the
/// same order; counts are per rank.
pub trait Collective {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Sends `send`'s consecutive runs of `send_counts[q]` bytes to rank q and receives
    /// rank p's run for this rank into consecutive runs of `recv_counts[p]` bytes of `recv`.
    fn all_to_all(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    );
    /// Every rank's `send` (rank p's is `counts[p]` bytes), concatenated in rank order.
    fn all_gather(&self, send: &[u8], recv: &mut [u8], counts: &[usize]);
    /// Overwrites `buf` on every rank with rank `root`'s.
    fn broadcast(&self, buf: &mut [u8], root: usize);
}

/// One process: the collectives are copies.
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_to_all(&self, send: &[u8], _: &[usize], recv: &mut [u8], _: &[usize]) {
        recv.copy_from_slice(send);
    }
    fn all_gather(&self, send: &[u8], recv: &mut [u8], _: &[usize]) {
        recv.copy_from_slice(send);
    }
    fn broadcast(&self, _: &mut [u8], _: usize) {}
}

/// Shard `g`'s gradient for parameter `i`, if it has one.
fn grad<T: Element>(g: &Option<ParamGrads<T>>, i: usize) -> Option<&Tensor<T>> {
    g.as_ref()
        .and_then(|g| g.grads.get(i))
        .and_then(Option::as_ref)
}

/// What the exchanges of a run cost so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExchangeStats {
    /// Gradient sums made.
    pub reductions: u64,
    /// Bytes this rank sent to other ranks in them.
    pub bytes_sent: u64,
    /// Wall time spent in them (packing, exchanging, summing, unpacking), seconds.
    pub seconds: f64,
}

/// Data parallelism over a communicator's ranks: which shards this rank computes, and the
/// shard-ordered sums of every rank's results.
pub struct DataParallel {
    comm: Box<dyn Collective>,
    stats: Cell<ExchangeStats>,
}

impl DataParallel {
    /// Over `comm`'s ranks.
    pub fn new(comm: Box<dyn Collective>) -> Self {
        DataParallel {
            comm,
            stats: Cell::new(ExchangeStats::default()),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// Whether this is rank 0 (the one that prints, evaluates and saves).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The exchanges' cost so far.
    pub fn stats(&self) -> ExchangeStats {
        self.stats.get()
    }

    /// The shards of `0..shards` this rank computes: a contiguous block, so rank order is
    /// shard order. Panics if there are fewer shards than ranks (a rank would idle).
    pub fn local_shards(&self, shards: usize) -> Range<usize> {
        assert!(
            shards >= self.size(),
            "data parallelism: {shards} shards cannot keep {} ranks busy; use at least as many shards as ranks",
            self.size()
        );
        let blocks = shard_range(shards, self.size(), self.rank());
        blocks.start..blocks.end
    }

    /// How many shards each rank computes.
    fn shards_per_rank(&self, shards: usize) -> Vec<usize> {
        (0..self.size())
            .map(|q| shard_range(shards, self.size(), q).len())
            .collect()
    }

    /// Every shard's value, in shard order, from each rank's values for its
    /// [`local_shards`](Self::local_shards) (`None`: the shard had no rows).
    pub fn gather_values(&self, local: &[Option<f64>], shards: usize) -> Vec<Option<f64>> {
        let counts: Vec<usize> = self.shards_per_rank(shards).iter().map(|n| n * 9).collect();
        let send: Vec<u8> = local
            .iter()
            .flat_map(|v| {
                let mut bytes = [0u8; 9];
                if let Some(v) = v {
                    bytes[0] = 1;
                    bytes[1..].copy_from_slice(&v.to_le_bytes());
                }
                bytes
            })
            .collect();
        let mut recv = vec![0u8; counts.iter().sum()];
        self.comm.all_gather(&send, &mut recv, &counts);
        recv.chunks_exact(9)
            .map(|b| (b[0] == 1).then(|| f64::from_le_bytes(b[1..].try_into().expect("8 bytes"))))
            .collect()
    }

    /// The sum over all `shards` of every rank's local shards' gradients, made as
    /// [`ParamGrads::sum`] makes it in one process (per element, the first shard with a
    /// gradient for the parameter, then each later one added in shard order), so the result
    /// is bit-identical for any number of ranks. `local` holds this rank's shards in order
    /// (`None`: no rows); `params` gives the shapes.
    pub fn sum_grads<T: Element>(
        &self,
        local: Vec<Option<ParamGrads<T>>>,
        params: &ParamStore<T>,
        shards: usize,
    ) -> ParamGrads<T> {
        let started = Instant::now();
        let (size, rank) = (self.size(), self.rank());
        let width = std::mem::size_of::<T>();
        let n = params.len();
        let lengths: Vec<usize> = params.ids().map(|id| params.get(id).numel()).collect();
        let offsets: Vec<usize> = lengths
            .iter()
            .scan(0, |at, &len| {
                let start = *at;
                *at += len;
                Some(start)
            })
            .collect();
        let total: usize = lengths.iter().sum();
        let segments: Vec<Range<usize>> = (0..size).map(|q| shard_range(total, size, q)).collect();
        let per_rank = self.shards_per_rank(shards);
        assert_eq!(
            local.len(),
            per_rank[rank],
            "sum_grads: one entry per local shard"
        );
        // The parameters' parts inside `segment`: (parameter, its range there, flat range).
        let pieces = |segment: &Range<usize>| -> Vec<(usize, Range<usize>, Range<usize>)> {
            (0..n)
                .filter_map(|i| {
                    let (start, end) = (
                        offsets[i].max(segment.start),
                        (offsets[i] + lengths[i]).min(segment.end),
                    );
                    (start < end).then(|| (i, start - offsets[i]..end - offsets[i], start..end))
                })
                .collect()
        };

        // Which shards have a gradient for which parameter, for all shards in order.
        let present_local: Vec<u8> = local
            .iter()
            .flat_map(|g| (0..n).map(move |i| u8::from(grad(g, i).is_some())))
            .collect();
        let mut present = vec![0u8; shards * n];
        let counts: Vec<usize> = per_rank.iter().map(|s| s * n).collect();
        self.comm.all_gather(&present_local, &mut present, &counts);

        // Segment q of every local shard, for rank q, straight from the gradients.
        let mut send: Vec<T> = Vec::with_capacity(local.len() * total);
        for segment in &segments {
            for g in &local {
                for (i, within, flat) in pieces(segment) {
                    match grad(g, i) {
                        Some(t) => send.extend_from_slice(&t.data()[within]),
                        None => send.resize(send.len() + flat.len(), T::zero()),
                    }
                }
            }
        }
        let send_counts: Vec<usize> = segments
            .iter()
            .map(|s| local.len() * s.len() * width)
            .collect();
        let mine = segments[rank].clone();
        let recv_counts: Vec<usize> = per_rank.iter().map(|s| s * mine.len() * width).collect();
        let mut recv = vec![T::zero(); shards * mine.len()];
        self.comm.all_to_all(
            bytemuck::cast_slice(&send),
            &send_counts,
            bytemuck::cast_slice_mut(&mut recv),
            &recv_counts,
        );
        drop(send);

        // This rank's segment summed over every shard in shard order; then everyone's sums.
        let mut all = vec![T::zero(); total];
        let sum = &mut all[mine.clone()];
        let mut begun = vec![false; n];
        if !mine.is_empty() {
            for (s, values) in recv.chunks_exact(mine.len()).enumerate() {
                for (i, _, flat) in pieces(&mine) {
                    if present[s * n + i] == 0 {
                        continue;
                    }
                    let at = flat.start - mine.start..flat.end - mine.start;
                    let (to, from) = (&mut sum[at.clone()], &values[at]);
                    if begun[i] {
                        to.iter_mut().zip(from).for_each(|(a, &b)| *a += b);
                    } else {
                        to.copy_from_slice(from);
                        begun[i] = true;
                    }
                }
            }
        }
        drop(recv);
        let counts: Vec<usize> = segments.iter().map(|s| s.len() * width).collect();
        let own: Vec<T> = all[mine.clone()].to_vec();
        self.comm.all_gather(
            bytemuck::cast_slice(&own),
            bytemuck::cast_slice_mut(&mut all),
            &counts,
        );
        let mut grads = ParamGrads::empty(n);
        for (i, id) in params.ids().enumerate() {
            if (0..shards).any(|s| present[s * n + i] == 1) {
                let values = all[offsets[i]..offsets[i] + lengths[i]].to_vec();
                grads.set(id, Tensor::from_vec(values, params.get(id).shape()));
            }
        }
        let sent = send_counts
            .iter()
            .enumerate()
            .filter(|&(q, _)| q != rank)
            .map(|(_, c)| c)
            .sum::<usize>()
            + (size - 1) * mine.len() * width;
        let mut stats = self.stats.get();
        stats.reductions += 1;
        stats.bytes_sent += sent as u64;
        stats.seconds += started.elapsed().as_secs_f64();
        self.stats.set(stats);
        grads
    }

    /// Rank 0's `flag` on every rank: for decisions that must be the same everywhere, such
    /// as stopping on a clock.
    pub fn root_decides(&self, flag: bool) -> bool {
        let mut byte = [u8::from(flag)];
        self.comm.broadcast(&mut byte, 0);
        byte[0] == 1
    }

    /// Makes every rank's parameters rank 0's.
    pub fn broadcast_params<T: Element>(&self, params: &mut ParamStore<T>) {
        for id in params.ids().collect::<Vec<_>>() {
            let tensor = params.get_mut(id);
            let mut bytes: Vec<u8> = bytemuck::cast_slice(tensor.data()).to_vec();
            self.comm.broadcast(&mut bytes, 0);
            for (v, b) in tensor
                .data_mut()
                .iter_mut()
                .zip(bytes.chunks_exact(std::mem::size_of::<T>()))
            {
                *v = bytemuck::pod_read_unaligned(b);
            }
        }
    }
}

#[cfg(test)]
#[path = "distributed_tests.rs"]
mod tests;
