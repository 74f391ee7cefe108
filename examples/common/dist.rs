//! How a training example runs across processes: built with `--features mpi` and started by
//! `mpirun -np N`, it joins that MPI job; otherwise it is one process. Rank 0 prints, evaluates and writes files; the other ranks are silent. A rank
//! that fails ends the whole job at once, naming itself, so no rank waits forever.

use recur::nn::distributed::DataParallel;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether this process keeps quiet (every rank but 0).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `println!` on rank 0 only.
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {
        if !$crate::dist::quiet() {
            println!($($arg)*);
        }
    };
}

/// The job this process is part of.
pub fn join() -> Rc<DataParallel> {
    let across = connect();
    QUIET.store(!across.is_root(), Ordering::Relaxed);
    Rc::new(across)
}

/// Started by mpirun (Open MPI's or another PMI launcher's variables are set): only then is
/// MPI initialised, so a run on its own pays nothing for the feature.
#[cfg(feature = "mpi")]
fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"]
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

#[cfg(feature = "mpi")]
fn connect() -> DataParallel {
    use recur::nn::distributed::Mpi;
    if !launched_by_mpirun() {
        return DataParallel::new(Box::new(recur::nn::distributed::SingleProcess));
    }
    let mpi = Mpi::init().expect("MPI is initialised once");
    let (rank, size) = {
        use recur::nn::distributed::Collective;
        (mpi.rank(), mpi.size())
    };
    if size > 1 {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("rank {rank} of {size} failed:");
            default(info);
            Mpi::abort_job(101);
        }));
    }
    DataParallel::new(Box::new(mpi))
}

#[cfg(not(feature = "mpi"))]
fn connect() -> DataParallel {
    DataParallel::new(Box::new(recur::nn::distributed::SingleProcess))
}

/// Ends a failed run: with other ranks, the whole job (they would wait for this one).
pub fn fail(across: &DataParallel, message: &str) -> std::process::ExitCode {
    if across.size() > 1 {
        eprintln!(
            "error on rank {} of {}: {message}",
            across.rank(),
            across.size()
        );
        abort_job();
    }
    eprintln!("error: {message}");
    std::process::ExitCode::FAILURE
}

#[cfg(feature = "mpi")]
fn abort_job() -> ! {
    recur::nn::distributed::Mpi::abort_job(1)
}

#[cfg(not(feature = "mpi"))]
fn abort_job() -> ! {
    unreachable!("one process has no other ranks")
}

/// What the gradient exchanges cost rank 0, for the run's summary (none in one process).
pub fn exchange_summary(across: &DataParallel) -> Option<String> {
    let stats = across.stats();
    (across.size() > 1 && stats.reductions > 0).then(|| {
        let per = stats.reductions as f64;
        format!(
            "gradient exchange on {} ranks: {} sums, {:.2} MB sent by rank 0 and {:.1} ms per sum",
            across.size(),
            stats.reductions,
            stats.bytes_sent as f64 / per / 1e6,
            1e3 * stats.seconds / per
        )
    })
}

/// What every training example checks before it starts, and its stop signals: SIGINT and
/// SIGTERM save the state in one process; under mpirun they end the job as mpirun does, and
/// no training state is written or resumed (the carried state is spread over the ranks).
pub fn start(
    across: &DataParallel,
    shards: usize,
    resume: bool,
) -> Result<Option<crate::run::Signals>, String> {
    if shards < across.size() {
        return Err(format!(
            "--shards {shards} cannot keep {} ranks busy: use at least as many shards as ranks",
            across.size()
        ));
    }
    if across.size() > 1 {
        if resume {
            return Err("--resume runs in one process: under mpirun no training state is written (the carried state is spread over the ranks)".into());
        }
        return Ok(None);
    }
    crate::run::Signals::install().map(Some)
}
