//! Tests of the shard-ordered reduction without MPI: the ranks are threads of this process,
//! joined by a test-only [`Collective`] over shared memory and a barrier.

use super::*;
use rand::{Rng, SeedableRng};
use recur_tape::Tensor;
use std::sync::{Arc, Barrier, Mutex};

/// What every rank posted for the collective in progress: its buffer and its counts.
struct Board {
    barrier: Barrier,
    posts: Mutex<Vec<(Vec<u8>, Vec<usize>)>>,
}

/// One rank of an in-process job.
struct ThreadRank {
    rank: usize,
    board: Arc<Board>,
}

impl ThreadRank {
    /// Posts `send` with `counts`, waits for every rank, runs `read` over all posts, and
    /// waits again so that no rank posts the next collective while another still reads.
    fn exchange(&self, send: &[u8], counts: &[usize], read: impl FnOnce(&[(Vec<u8>, Vec<usize>)])) {
        self.board.posts.lock().unwrap()[self.rank] = (send.to_vec(), counts.to_vec());
        self.board.barrier.wait();
        read(&self.board.posts.lock().unwrap());
        self.board.barrier.wait();
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.board.posts.lock().unwrap().len()
    }
    fn all_to_all(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) {
        self.exchange(send, send_counts, |posts| {
            let mut at = 0;
            for (p, (buffer, counts)) in posts.iter().enumerate() {
                let start: usize = counts[..self.rank].iter().sum();
                assert_eq!(counts[self.rank], recv_counts[p], "counts agree");
                recv[at..at + recv_counts[p]]
                    .copy_from_slice(&buffer[start..start + counts[self.rank]]);
                at += recv_counts[p];
            }
        });
    }
    fn all_gather(&self, send: &[u8], recv: &mut [u8], counts: &[usize]) {
        assert_eq!(send.len(), counts[self.rank]);
        self.exchange(send, counts, |posts| {
            let all: Vec<u8> = posts.iter().flat_map(|(b, _)| b.clone()).collect();
            recv.copy_from_slice(&all);
        });
    }
    fn broadcast(&self, buf: &mut [u8], root: usize) {
        let mine = buf.to_vec();
        self.exchange(&mine, &[], |posts| buf.copy_from_slice(&posts[root].0));
    }
}

/// Runs `job` on `size` ranks (threads); their results in rank order.
fn on_ranks<R: Send>(size: usize, job: impl Fn(DataParallel) -> R + Sync) -> Vec<R> {
    let board = Arc::new(Board {
        barrier: Barrier::new(size),
        posts: Mutex::new(vec![(Vec::new(), Vec::new()); size]),
    });
    std::thread::scope(|scope| {
        let ranks: Vec<_> = (0..size)
            .map(|rank| {
                let (board, job) = (Arc::clone(&board), &job);
                scope.spawn(move || job(DataParallel::new(Box::new(ThreadRank { rank, board }))))
            })
            .collect();
        ranks.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// Three parameters (29 elements, which no rank count here divides) and `shards` shards of
/// random gradients, where shard 0 has none for p1 and shard 2 none for p2.
fn problem(shards: usize) -> (ParamStore<f32>, Vec<ParamGrads<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut store = ParamStore::<f32>::new();
    let ids: Vec<_> = [vec![3, 5], vec![7], vec![7]]
        .iter()
        .enumerate()
        .map(|(i, shape)| store.add(format!("p{i}"), Tensor::zeros(shape)))
        .collect();
    let grads = (0..shards)
        .map(|s| {
            let mut g = ParamGrads::empty(3);
            for (i, &id) in ids.iter().enumerate() {
                if (s, i) != (0, 1) && (s, i) != (2, 2) {
                    g.set(
                        id,
                        Tensor::uniform(store.get(id).shape(), -1.0, 1.0, &mut rng),
                    );
                }
            }
            g
        })
        .collect();
    (store, grads)
}

fn bits(g: &ParamGrads<f32>) -> Vec<Option<Vec<u32>>> {
    (0..g.grads.len())
        .map(|i| {
            g.grads[i]
                .as_ref()
                .map(|t| t.data().iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

/// Sums `grads` (a shard each) on 1 to `grads.len()` ranks with blocks of `block` elements
/// and checks every rank gets [`ParamGrads::sum`]'s bits.
fn sums_like_one_process(store: &ParamStore<f32>, grads: &[ParamGrads<f32>], block: usize) {
    let shards = grads.len();
    let want = bits(&ParamGrads::sum(grads.to_vec(), store.len()));
    for size in 1..=shards {
        let got = on_ranks(size, |mut dp| {
            dp.block = block;
            let local: Vec<Option<ParamGrads<f32>>> = dp
                .local_shards(shards)
                .map(|k| Some(grads[k].clone()))
                .collect();
            bits(&dp.sum_grads(local, store, shards))
        });
        for (rank, g) in got.iter().enumerate() {
            assert_eq!(g, &want, "block {block}, {size} ranks, rank {rank}");
        }
    }
}

#[test]
fn any_number_of_ranks_sums_like_param_grads_sum_bit_for_bit() {
    let (store, grads) = problem(5);
    sums_like_one_process(&store, &grads, 128);
}

#[test]
fn a_shard_without_rows_is_skipped_as_in_one_process() {
    let (store, grads) = problem(4);
    let present = [true, false, true, true];
    let kept: Vec<ParamGrads<f32>> = grads
        .iter()
        .zip(present)
        .filter(|(_, p)| *p)
        .map(|(g, _)| g.clone())
        .collect();
    let want = bits(&ParamGrads::sum(kept, 3));
    let got = on_ranks(2, |dp| {
        let local = dp
            .local_shards(4)
            .map(|k| present[k].then(|| grads[k].clone()))
            .collect();
        bits(&dp.sum_grads(local, &store, 4))
    });
    assert!(got.iter().all(|g| g == &want));
}

#[test]
fn values_flags_and_parameters_travel_in_rank_order() {
    let got = on_ranks(3, |dp| {
        let mine: Vec<Option<f64>> = dp
            .local_shards(4)
            .map(|k| (k != 2).then_some(k as f64 + 0.5))
            .collect();
        let values = dp.gather_values(&mine, 4);
        let stop = dp.root_decides(dp.rank() == 0);
        let mut store = ParamStore::<f64>::new();
        let w = store.add("w", Tensor::from_vec(vec![dp.rank() as f64; 3], &[3]));
        dp.broadcast_params(&mut store);
        (values, stop, store.get(w).data().to_vec(), dp.stats())
    });
    for (values, stop, w, stats) in got {
        assert_eq!(values, vec![Some(0.5), Some(1.5), None, Some(3.5)]);
        assert!(stop);
        assert_eq!(w, vec![0.0; 3]);
        assert_eq!(stats.reductions, 0);
    }
}

#[test]
fn the_bytes_sent_are_a_ring_allreduces() {
    // Two ranks with a shard each send half the gradient in the all-to-all and half in the
    // all-gather: the whole gradient, as a ring allreduce would for N = 2; less the 7
    // values of p1, which shard 0 has no gradient for (rank 1 sums elements 15 to 28).
    let (store, grads) = problem(2);
    let sent = on_ranks(2, |dp| {
        let local = dp.local_shards(2).map(|k| Some(grads[k].clone())).collect();
        dp.sum_grads(local, &store, 2);
        dp.stats().bytes_sent
    });
    let total: u64 = 29 * 4;
    assert_eq!(sent.iter().sum::<u64>(), 2 * total - 7 * 4);
}

/// An embedding-like problem: a 40 × 6 table (and a dense 5-vector) whose shards' gradients
/// touch a few rows each, with -0.0 in some touched rows that other shards leave at +0.0.
fn sparse_problem(shards: usize) -> (ParamStore<f32>, Vec<ParamGrads<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut store = ParamStore::<f32>::new();
    let table = store.add("table", Tensor::zeros(&[40, 6]));
    let dense = store.add("dense", Tensor::zeros(&[5]));
    let grads = (0..shards)
        .map(|s| {
            let mut values = vec![0.0f32; 240];
            for row in [s, 3 * s + 1, 17, 39 - s] {
                let row = &mut values[row * 6..row * 6 + 6];
                for (j, v) in row.iter_mut().enumerate() {
                    *v = match j {
                        0 if s % 2 == 0 => -0.0,
                        _ => rng.gen_range(-1.0..1.0),
                    };
                }
            }
            let mut g = ParamGrads::empty(2);
            g.set(table, Tensor::from_vec(values, &[40, 6]));
            if s != 1 {
                g.set(dense, Tensor::uniform(&[5], -1.0, 1.0, &mut rng));
            }
            g
        })
        .collect();
    (store, grads)
}

#[test]
fn zero_blocks_stay_home_and_the_sums_keep_every_bit() {
    let shards = 4;
    for (store, grads) in [sparse_problem(shards), problem(shards)] {
        for block in [1, 3, 4, 6, 128] {
            sums_like_one_process(&store, &grads, block);
        }
    }
    // The problem has the case a block code must not skip: shard 0's -0.0 in row 0, which
    // the later shards' untouched (+0.0) rows turn into +0.0 in the sum.
    let (store, grads) = sparse_problem(shards);
    assert!(grads[0].grads[0].as_ref().unwrap().data()[0].is_sign_negative());
    let sum = ParamGrads::sum(grads, store.len());
    assert!(sum.grads[0].as_ref().unwrap().data()[0].is_sign_positive());
}

#[test]
fn untouched_rows_are_not_sent() {
    // Rows as blocks, 2 ranks: rank 0 sums rows 0-20, rank 1 rows 21-39 and the vector.
    // Shard 0 touches rows 0, 1, 17, 39 and has the vector; shard 1 touches rows 1, 4, 17, 38.
    // Rank 0 sends row 39 and the vector (11 values), then its 4 summed rows (24); rank 1
    // sends rows 1, 4, 17 (18), then rows 38, 39 and the vector (17): 35 values each, where
    // dense gradients would cost 245.
    let (store, grads) = sparse_problem(2);
    let sent = on_ranks(2, |mut dp| {
        dp.block = 6;
        let local = dp.local_shards(2).map(|k| Some(grads[k].clone())).collect();
        dp.sum_grads(local, &store, 2);
        dp.stats().bytes_sent
    });
    assert_eq!(sent, vec![35 * 4, 35 * 4]);
}
