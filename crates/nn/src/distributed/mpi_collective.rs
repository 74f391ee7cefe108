//! [`Collective`] on MPI (Open MPI or any other implementation) through the `mpi` crate.

use super::Collective;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;

/// `MPI_COMM_WORLD` of a program started by `mpirun`; MPI is finalised when it is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl Mpi {
    /// Initialises MPI (only the calling thread makes MPI calls). `None` if MPI was already
    /// initialised.
    pub fn init() -> Option<Self> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)?;
        Some(Mpi {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// Ends every rank of the job at once with `code` (`MPI_Abort`): a rank that fails must
    /// not leave the others waiting in a collective. Callable from a panic hook.
    pub fn abort_job(code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
}

/// MPI's counts and displacements for runs of `bytes[q]` bytes.
fn counts(bytes: &[usize]) -> (Vec<Count>, Vec<Count>) {
    let counts: Vec<Count> = bytes
        .iter()
        .map(|&b| Count::try_from(b).expect("MPI counts a message below 2 GiB"))
        .collect();
    let displs = counts
        .iter()
        .scan(0, |at: &mut Count, &c| {
            let start = *at;
            *at += c;
            Some(start)
        })
        .collect();
    (counts, displs)
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_to_all(
        &self,
        send: &[u8],
        send_counts: &[usize],
        recv: &mut [u8],
        recv_counts: &[usize],
    ) {
        let (sc, sd) = counts(send_counts);
        let (rc, rd) = counts(recv_counts);
        let send = Partition::new(send, sc, sd);
        let mut recv = PartitionMut::new(recv, rc, rd);
        self.world.all_to_all_varcount_into(&send, &mut recv);
    }

    fn all_gather(&self, send: &[u8], recv: &mut [u8], counts_per_rank: &[usize]) {
        let (c, d) = counts(counts_per_rank);
        let mut recv = PartitionMut::new(recv, c, d);
        self.world.all_gather_varcount_into(send, &mut recv);
    }

    fn broadcast(&self, buf: &mut [u8], root: usize) {
        self.world.process_at_rank(root as i32).broadcast_into(buf);
    }
}
