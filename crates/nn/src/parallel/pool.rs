//! Persistent worker threads behind [`on_threads`]. Starting a thread, or waking one that
//! sleeps, costs 50–100 µs on a virtual machine (this project's measured 60 µs to spawn and
//! join, 85 µs for a channel round trip), which is more than a pass over a small model's
//! parameters takes. So a worker, once started, stays: after a job it spins for a while
//! waiting for the next one (a hand-over then takes under a microsecond) and only then
//! sleeps. Training calls these passes several times per step, so its workers never sleep.
//!
//! Jobs borrow from the caller's stack; the caller waits until every job it handed out has
//! finished before it returns or unwinds, which is what makes lending them to threads that
//! outlive the call sound.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a worker spins for its next job, and a caller for its jobs' end, before sleeping.
const SPIN: Duration = Duration::from_millis(2);

/// Most workers kept; a call that needs more while they are all busy (calls from several
/// threads at once, or from inside a job) starts threads of its own for it, as a scope.
const MAX_WORKERS: usize = 16;

/// Runs `run` on every job, each on its own thread, the first on the calling thread rather
/// than leaving it waiting; results in job order. A panic in any job is raised here once
/// every job has finished.
pub(crate) fn on_threads<J: Send, R: Send>(jobs: Vec<J>, run: impl Fn(J) -> R + Sync) -> Vec<R> {
    if jobs.len() <= 1 {
        return jobs.into_iter().map(run).collect();
    }
    let Some(workers) = claim(jobs.len() - 1) else {
        return on_scoped_threads(jobs, run);
    };
    let slots: Vec<Mutex<(Option<J>, Option<R>)>> = jobs
        .into_iter()
        .map(|job| Mutex::new((Some(job), None)))
        .collect();
    let task = |k: usize| {
        let job = lock(&slots[k]).0.take().expect("each job runs once");
        let result = run(job);
        lock(&slots[k]).1 = Some(result);
    };
    let task: &(dyn Fn(usize) + Sync) = &task;
    // SAFETY (of the workers' use of this pointer): they call `task` only until they mark
    // their hand-over done, and `Handed`'s drop, which runs before this function returns or
    // unwinds past `task`, waits for every hand-over to be done.
    let shared: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(task) };
    let handovers: Vec<Handover> = (1..slots.len())
        .map(|index| Handover {
            task: shared,
            index,
            done: AtomicBool::new(false),
            panic: Mutex::new(None),
            caller: std::thread::current(),
        })
        .collect();
    let handed = Handed {
        workers: &workers,
        handovers: &handovers,
    };
    for (worker, handover) in workers.iter().zip(&handovers) {
        worker.hand(handover);
    }
    let first = catch_unwind(AssertUnwindSafe(|| task(0)));
    drop(handed);
    if let Err(payload) = first {
        resume_unwind(payload);
    }
    if let Some(payload) = handovers.iter().find_map(|h| lock(&h.panic).take()) {
        resume_unwind(payload);
    }
    slots
        .into_iter()
        .map(|slot| {
            let (_, result) = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
            result.expect("every job ran")
        })
        .collect()
}

/// The same on threads started for this call alone.
fn on_scoped_threads<J: Send, R: Send>(jobs: Vec<J>, run: impl Fn(J) -> R + Sync) -> Vec<R> {
    let run = &run;
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = jobs.map(|job| scope.spawn(move || run(job))).collect();
        let mut results = vec![run(first)];
        results.extend(others.into_iter().map(|h| match h.join() {
            Ok(result) => result,
            Err(payload) => resume_unwind(payload),
        }));
        results
    })
}

/// Locks `m`; a job that panicked while holding it left nothing half-written that matters
/// (its panic is raised anyway).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One job lent to a worker: `task(index)`, and how the worker reports its end. `task`
/// points into the caller's frame, valid until the worker sets `done`.
struct Handover {
    task: *const (dyn Fn(usize) + Sync),
    index: usize,
    done: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    caller: Thread,
}

/// The hand-overs of one call; dropping it waits for them all and frees their workers.
struct Handed<'a> {
    workers: &'a [Arc<Worker>],
    handovers: &'a [Handover],
}

impl Drop for Handed<'_> {
    fn drop(&mut self) {
        for (worker, handover) in self.workers.iter().zip(self.handovers) {
            let start = Instant::now();
            while !handover.done.load(Ordering::Acquire) {
                if start.elapsed() < SPIN {
                    std::hint::spin_loop();
                } else {
                    // The worker unparks us once it is done (a spurious wake-up loops).
                    std::thread::park_timeout(SPIN);
                }
            }
            worker.claimed.store(false, Ordering::Release);
        }
    }
}

/// A persistent thread and its mailbox.
struct Worker {
    /// Held by the call whose job the worker runs (or is about to).
    claimed: AtomicBool,
    /// The next job, or null.
    mailbox: AtomicPtr<Handover>,
    /// Whether the worker sleeps (or is about to) on `wake`.
    sleeping: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

static WORKERS: Mutex<Vec<Arc<Worker>>> = Mutex::new(Vec::new());

/// `count` idle workers, claimed for the caller, starting new ones as needed; `None` if that
/// would make more than [`MAX_WORKERS`].
fn claim(count: usize) -> Option<Vec<Arc<Worker>>> {
    let mut all = lock(&WORKERS);
    let mut claimed: Vec<Arc<Worker>> = Vec::with_capacity(count);
    for worker in all.iter() {
        if claimed.len() == count {
            break;
        }
        if worker
            .claimed
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            claimed.push(Arc::clone(worker));
        }
    }
    while claimed.len() < count && all.len() < MAX_WORKERS {
        let worker = Arc::new(Worker {
            claimed: AtomicBool::new(true),
            mailbox: AtomicPtr::new(std::ptr::null_mut()),
            sleeping: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let own = Arc::clone(&worker);
        let started = std::thread::Builder::new()
            .name(format!("recur-worker-{}", all.len()))
            .spawn(move || own.serve());
        if started.is_err() {
            break;
        }
        all.push(Arc::clone(&worker));
        claimed.push(worker);
    }
    if claimed.len() < count {
        for worker in claimed {
            worker.claimed.store(false, Ordering::Release);
        }
        return None;
    }
    Some(claimed)
}

impl Worker {
    /// Gives the worker `handover` (it must be claimed for the caller and idle).
    fn hand(&self, handover: &Handover) {
        self.mailbox
            .store(std::ptr::from_ref(handover).cast_mut(), Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let _sleep = lock(&self.sleep);
            self.wake.notify_one();
        }
    }

    /// The worker's life: wait for a job, run it, report, forever.
    fn serve(&self) {
        loop {
            let handover = self.next();
            // SAFETY: the caller keeps the hand-over, and the task it points to, alive until
            // it sees `done`.
            let (handover, task) = unsafe { (&*handover, &*(*handover).task) };
            let outcome = catch_unwind(AssertUnwindSafe(|| task(handover.index)));
            if let Err(payload) = outcome {
                *lock(&handover.panic) = Some(payload);
            }
            let caller = handover.caller.clone();
            // After this store the caller may free the hand-over: not touched again.
            handover.done.store(true, Ordering::Release);
            caller.unpark();
        }
    }

    /// Waits for the next hand-over: spinning for [`SPIN`], then asleep.
    fn next(&self) -> *mut Handover {
        let start = Instant::now();
        loop {
            // Read before taking, so that spinning does not keep the line from the caller.
            if !self.mailbox.load(Ordering::Relaxed).is_null() {
                return self.mailbox.swap(std::ptr::null_mut(), Ordering::SeqCst);
            }
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut sleep = lock(&self.sleep);
            self.sleeping.store(true, Ordering::SeqCst);
            // `hand` stores the job before it reads `sleeping`, so either it sees the flag
            // and notifies under the lock, or this load sees the job.
            while self.mailbox.load(Ordering::SeqCst).is_null() {
                sleep = self
                    .wake
                    .wait(sleep)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            self.sleeping.store(false, Ordering::SeqCst);
            drop(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_job_runs_once_on_its_own_thread_with_results_in_order() {
        for jobs in 1..6 {
            let threads: Vec<_> =
                on_threads((0..jobs).collect(), |k| (k, std::thread::current().id()));
            assert_eq!(
                threads.iter().map(|t| t.0).collect::<Vec<_>>(),
                (0..jobs).collect::<Vec<_>>()
            );
            assert_eq!(
                threads[0].1,
                std::thread::current().id(),
                "the first job runs on the caller"
            );
            let mut ids: Vec<_> = threads.iter().map(|t| format!("{:?}", t.1)).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), jobs, "{jobs} jobs on {jobs} threads");
        }
    }

    /// Jobs run at the same time: each waits for all the others (which would hang if two
    /// shared a thread), also after the workers went to sleep, and from several callers at
    /// once, which then take workers of their own or threads started for the call.
    #[test]
    fn jobs_run_concurrently_from_several_callers_and_after_the_workers_slept() {
        let round = |jobs: usize| {
            let arrived = AtomicUsize::new(0);
            on_threads((0..jobs).collect(), |k| {
                arrived.fetch_add(1, Ordering::SeqCst);
                let start = Instant::now();
                while arrived.load(Ordering::SeqCst) < jobs {
                    assert!(start.elapsed().as_secs() < 20, "job {k} waited alone");
                    std::hint::spin_loop();
                }
                k
            })
        };
        assert_eq!(round(3), vec![0, 1, 2]);
        std::thread::sleep(SPIN * 3);
        assert_eq!(round(3), vec![0, 1, 2]);
        std::thread::scope(|s| {
            let callers: Vec<_> = (0..4).map(|_| s.spawn(|| round(5))).collect();
            for caller in callers {
                assert_eq!(caller.join().unwrap(), vec![0, 1, 2, 3, 4]);
            }
        });
        // A job that itself runs jobs.
        let nested = on_threads(vec![2, 3], |n| round(n).len());
        assert_eq!(nested, vec![2, 3]);
    }

    #[test]
    fn a_panicking_job_is_raised_after_every_job_finished_and_the_workers_serve_on() {
        for failing in [0, 2] {
            let finished = AtomicUsize::new(0);
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                on_threads((0..3).collect(), |k: usize| {
                    if k == failing {
                        panic!("job {k} fails");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    finished.fetch_add(1, Ordering::SeqCst);
                })
            }));
            let message = outcome.expect_err("the panic is raised");
            assert_eq!(
                message.downcast_ref::<String>().map(String::as_str),
                Some(format!("job {failing} fails").as_str())
            );
            assert_eq!(
                finished.load(Ordering::SeqCst),
                2,
                "the others ran to the end"
            );
        }
        assert_eq!(on_threads(vec![1, 2, 3], |k| k * 2), vec![2, 4, 6]);
    }
}
