//! Data parallelism across processes: the fixed shards of every batch are spread over the
//! ranks of a communicator in contiguous blocks, and the shards' gradients are summed in
//! shard order, so every rank gets bit for bit what one process summing all the shards gets,
//! whatever the number of ranks. The flat gradient is cut into one segment per rank; an
//! all-to-all hands each rank every shard's part of its segment, the rank sums it shard by
//! shard, and an all-gather spreads the sums: a ring allreduce's traffic (2(N−1)/N of the
//! gradient per rank), in a fixed order. Blocks of a gradient that are all zero (the rows of
//! an embedding that a shard's tokens did not touch) are named, not sent.
//!
//! The transport is MPI (`Mpi`, with the feature `mpi`); [`Collective`] is all the reduction needs
//! from it, and [`SingleProcess`] is the one-rank case.

use crate::parallel::shard_range;
use crate::params::{ParamGrads, ParamStore};
use recur_tape::Element;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::time::Instant;

mod blocks;
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
    /// Elements per block of the gradient exchange (see [`sum_grads`](Self::sum_grads)).
    block: usize,
    scratch: RefCell<blocks::Scratch>,
}

impl DataParallel {
    /// Over `comm`'s ranks.
    pub fn new(comm: Box<dyn Collective>) -> Self {
        DataParallel {
            comm,
            stats: Cell::new(ExchangeStats::default()),
            block: 128,
            scratch: RefCell::default(),
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
    /// (`None`: no rows); `params` gives the shapes. The gradients travel in blocks of 128
    /// elements, and a block that is all +0.0 is not sent: a word model's embedding gradient
    /// costs the rows its batch touched, not the whole table.
    pub fn sum_grads<T: Element>(
        &self,
        local: Vec<Option<ParamGrads<T>>>,
        params: &ParamStore<T>,
        shards: usize,
    ) -> ParamGrads<T> {
        let started = Instant::now();
        let per_rank = self.shards_per_rank(shards);
        assert_eq!(
            local.len(),
            per_rank[self.rank()],
            "sum_grads: one entry per local shard"
        );
        let (grads, sent) = blocks::sum_in_shard_order(
            &*self.comm,
            local,
            params,
            &per_rank,
            self.block,
            &mut self.scratch.borrow_mut(),
        );
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
