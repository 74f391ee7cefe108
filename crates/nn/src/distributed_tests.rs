//! Tests of the shard-ordered reduction without MPI: the ranks are threads of this process,
//! joined by a test-only [`Collective`] over shared memory and a barrier.

use super::*;
use rand::SeedableRng;
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

#[test]
fn any_number_of_ranks_sums_like_param_grads_sum_bit_for_bit() {
    let shards = 5;
    let (store, grads) = problem(shards);
    let want = bits(&ParamGrads::sum(grads.clone(), 3));
    for size in 1..=shards {
        let got = on_ranks(size, |dp| {
            let local: Vec<Option<ParamGrads<f32>>> = dp
                .local_shards(shards)
                .map(|k| Some(grads[k].clone()))
                .collect();
            bits(&dp.sum_grads(local, &store, shards))
        });
        for (rank, g) in got.iter().enumerate() {
            assert_eq!(g, &want, "{size} ranks, rank {rank}");
        }
    }
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
    // all-gather: the whole gradient, as a ring allreduce would for N = 2.
    let (store, grads) = problem(2);
    let sent = on_ranks(2, |dp| {
        let local = dp.local_shards(2).map(|k| Some(grads[k].clone())).collect();
        dp.sum_grads(local, &store, 2);
        dp.stats().bytes_sent
    });
    let total: u64 = 29 * 4;
    assert_eq!(sent.iter().sum::<u64>(), 2 * total);
}
