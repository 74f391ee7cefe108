//! Data-parallel training across processes on MPI (built with `--features mpi`; `.ci/run`
//! installs Open MPI and runs these): char_lm under `mpirun -np 1, 2, 4` prints the same
//! losses and ends with bit-for-bit the weights of one process with the same seed, batch and
//! shard count; a killed rank ends the whole job within seconds, naming the rank, and the
//! checkpoint on disk stays whole; too few shards for the ranks is an error naming the rank.
#![cfg(feature = "mpi")]

mod common;

use common::examples::{example, record, scratch, succeed};
use recur::nn::checkpoint;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn args(dir: &Path, extra: &str) -> Vec<String> {
    let corpus = dir.join("corpus.txt");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare/input.txt"),
    )
    .unwrap();
    std::fs::write(&corpus, &text[..40_000]).unwrap();
    let flags = format!(
        "--embed 8 --layers 2 --dropout 0.1 --batch-size 8 --num-steps 16 --log-every 1 \
         --length 80 --threads 1 {extra}"
    );
    let mut args: Vec<String> = flags.split_whitespace().map(String::from).collect();
    args.extend(["--data".into(), corpus.display().to_string()]);
    args
}

/// One MPI job at a time: concurrent jobs would share Open MPI's session directory, and two
/// cores are enough for one.
static ONE_JOB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_job() -> std::sync::MutexGuard<'static, ()> {
    ONE_JOB
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `mpirun -np ranks <example> args --out out`.
fn mpirun_example(ranks: usize, name: &str, args: &[String], out: &Path) -> Command {
    let mut command = Command::new("mpirun");
    command
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &ranks.to_string(),
        ])
        .arg(example(name))
        .args(args)
        .arg("--out")
        .arg(out);
    command
}

/// `mpirun -np ranks char_lm args --out out`.
fn mpirun(ranks: usize, args: &[String], out: &Path) -> Command {
    mpirun_example(ranks, "char_lm", args, out)
}

/// One process of `name` with `args`, writing under `out`.
fn alone(name: &str, args: &[String], out: &Path) -> Command {
    let mut command = Command::new(example(name));
    command.args(args).arg("--out").arg(out);
    command
}

fn weights(out: &Path) -> Vec<(String, checkpoint::StoredTensor)> {
    checkpoint::read(&out.join("latest/char_lm.safetensors"))
        .unwrap()
        .tensors
}

#[test]
fn one_two_and_four_ranks_train_bit_for_bit_like_one_process() {
    let _job = one_job();
    let dir = scratch("mpi-same");
    let args = args(
        &dir,
        "--shards 4 --hidden 32 --steps 120 --epochs 1 --eval-every 40",
    );
    let want = record(&succeed(alone("char_lm", &args, &dir.join("alone"))));
    assert!(want.len() > 120, "{want:?}");
    let want_weights = weights(&dir.join("alone"));
    for ranks in [1, 2, 4] {
        let out_dir = dir.join(format!("ranks{ranks}"));
        let said = succeed(mpirun(ranks, &args, &out_dir));
        assert_eq!(record(&said), want, "{ranks} ranks");
        assert_eq!(weights(&out_dir), want_weights, "{ranks} ranks");
        // Only rank 0 printed and wrote.
        assert_eq!(said.matches("step 120: loss").count(), 1);
        assert_eq!(
            std::fs::read_dir(&out_dir).unwrap().count(),
            2,
            "version_0 and latest"
        );
    }
}

/// The processes whose parent is `parent` (from /proc: no procps needed).
fn children(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...: the comm may hold spaces, so read after its ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

#[test]
fn a_killed_rank_ends_the_job_within_seconds_and_the_checkpoint_stays_whole() {
    let _job = one_job();
    let dir = scratch("mpi-kill");
    let args = args(
        &dir,
        "--shards 2 --steps 1000000 --epochs 1000 --eval-every 20 --hidden 96",
    );
    let out_dir = dir.join("out");
    let mut job = mpirun(2, &args, &out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a checkpoint, then kill one of the two ranks (either will do: the job must
    // end).
    let ckpt = out_dir.join("latest/char_lm.safetensors");
    let started = Instant::now();
    while !ckpt.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint written"
        );
        if let Some(status) = job.try_wait().unwrap() {
            let out = job.wait_with_output().unwrap();
            panic!(
                "the job ended ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = children(job.id());
    assert_eq!(pids.len(), 2, "two ranks under mpirun: {pids:?}");
    let killed = Instant::now();
    let kill = format!("kill -s KILL {}", pids[1]);
    assert!(Command::new("bash")
        .args(["-c", &kill])
        .status()
        .unwrap()
        .success());
    let out = job.wait_with_output().unwrap();
    let took = killed.elapsed();
    assert!(!out.status.success());
    assert!(
        took < Duration::from_secs(10),
        "the job took {took:?} to end"
    );
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("rank") && said.contains("signal 9"), "{said}");
    checkpoint::read(&ckpt).expect("the last checkpoint is whole");
}

#[test]
fn more_ranks_than_shards_is_an_error_naming_the_rank() {
    let _job = one_job();
    let dir = scratch("mpi-shards");
    let started = Instant::now();
    let out = mpirun(3, &args(&dir, "--shards 2 --steps 5"), &dir.join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(30));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("error on rank")
            && said.contains("of 3: --shards 2 cannot keep 3 ranks busy"),
        "{said}"
    );
}

/// One process, then `mpirun -np 2`, of `name` with `args`: the same result lines.
fn same_on_two_ranks(name: &str, args: &[String], dir: &Path) {
    let _job = one_job();
    let want = record(&succeed(alone(name, args, &dir.join("alone"))));
    assert!(want.len() > 5, "{want:?}");
    let got = record(&succeed(mpirun_example(2, name, args, &dir.join("ranks2"))));
    assert_eq!(got, want);
}

#[test]
fn word_lm_on_two_ranks_prints_what_one_process_prints() {
    let dir = scratch("mpi-word-lm");
    let ptb = dir.join("ptb");
    std::fs::create_dir_all(&ptb).unwrap();
    let mut x: u64 = 7;
    for (name, sentences) in [("train", 800), ("valid", 300), ("test", 300)] {
        let mut text = String::new();
        for _ in 0..sentences {
            for _ in 0..8 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(&format!(" w{}", (x >> 33) % 25));
            }
            text.push_str(" \n");
        }
        std::fs::write(ptb.join(format!("ptb.{name}.txt")), text).unwrap();
    }
    let args: Vec<String> = "--epochs 2 --log-every 4 --threads 1 --shards 2 --data"
        .split(' ')
        .map(String::from)
        .chain([ptb.display().to_string()])
        .collect();
    same_on_two_ranks("word_lm", &args, &dir);
}

#[test]
fn translate_on_two_ranks_prints_what_one_process_prints() {
    let dir = scratch("mpi-translate");
    let args: Vec<String> = "--hidden 16 --embed 16 --epochs 1 --beam 2 --threads 1 --shards 2"
        .split(' ')
        .map(String::from)
        .collect();
    same_on_two_ranks("translate", &args, &dir);
}
