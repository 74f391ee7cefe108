//! No lost work (issue 22): char_lm killed at any moment (SIGKILL between steps or in the
//! middle of writing its state, SIGINT, SIGTERM) and resumed with `--resume` ends with the
//! same weights, loss lines and sample as a run that was never interrupted, at 1 and 2
//! threads; a save that fails stops the run and keeps the previous state; a resume with
//! other settings or data is refused; each run gets its own folder. Runs the `char_lm`
//! example that `cargo test` builds beside this test.

mod common;

use common::examples::{example, record, scratch, shakespeare, succeed};
use recur::nn::checkpoint;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

/// A small char_lm run: two epochs of about 420 updates, a state every 3 updates.
fn args(dir: &Path, threads: usize) -> Vec<String> {
    let corpus = shakespeare(dir, 30_000);
    let flags = "--hidden 32 --embed 8 --layers 1 --batch-size 4 --num-steps 16 --eval-every 50 \
                 --log-every 1 --save-every 3 --epochs 2 --length 60";
    let mut args: Vec<String> = flags.split(' ').map(String::from).collect();
    args.extend(["--threads".into(), threads.to_string()]);
    args.extend(["--data".into(), corpus.display().to_string()]);
    args.extend(["--out".into(), dir.join("runs").display().to_string()]);
    args
}

/// `args` with `flag` set to `value` (replaced if present).
fn set(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = args.to_vec();
    match args.iter().position(|a| a == flag) {
        Some(at) => args[at + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
    args
}

fn char_lm(args: &[String], extra: &[&str]) -> Command {
    let mut command = Command::new(example("char_lm"));
    command.args(args).args(extra);
    command
}

type Weights = Vec<(String, checkpoint::StoredTensor)>;

/// A run's final char_lm weights (`run`: `latest` or `version_N` under `dir/runs`).
fn weights(dir: &Path, run: &str) -> Weights {
    weights_of(dir, run, "char_lm")
}

fn weights_of(dir: &Path, run: &str, example: &str) -> Weights {
    let path = dir
        .join("runs")
        .join(run)
        .join(format!("{example}.safetensors"));
    checkpoint::read(&path).expect("the run's weights").tensors
}

/// The newest run's training state.
fn state(dir: &Path) -> PathBuf {
    dir.join("runs/latest/state.safetensors")
}

/// The uninterrupted run's record and weights (one thread), made once for all tests.
fn reference() -> (Vec<String>, Weights) {
    static REFERENCE: std::sync::OnceLock<(Vec<String>, Weights)> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(uninterrupted).clone()
}

fn uninterrupted() -> (Vec<String>, Weights) {
    let dir = scratch("resume-reference");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    let record = record(&succeed(char_lm(&args(&dir, 1), &[])));
    assert!(record.len() > 800, "{} lines", record.len());
    (record, weights(&dir, "latest"))
}

/// Runs `command`, sends `signal` once it has printed "step {at}:", and returns its exit
/// status and what it printed.
fn interrupt(command: Command, at: usize, signal: &str) -> (ExitStatus, String) {
    interrupt_on(command, &format!("step {at}:"), signal)
}

/// Runs `command`, sends `signal` once it has printed a line starting with `mark`, and
/// returns its exit status and what it printed.
fn interrupt_on(mut command: Command, mark: &str, signal: &str) -> (ExitStatus, String) {
    let mut child: Child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("char_lm starts");
    let mut printed = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut sent = false;
    for line in lines.by_ref() {
        let line = line.expect("utf-8 output");
        printed.push_str(&line);
        printed.push('\n');
        if !sent && line.starts_with(mark) {
            if signal == "KILL" {
                child.kill().expect("SIGKILL");
            } else {
                let pid = child.id().to_string();
                // bash's own kill: no procps needed.
                let kill = format!("kill -s {signal} {pid}");
                let status = Command::new("bash").args(["-c", &kill]).status();
                assert!(status.expect("kill runs").success());
            }
            sent = true;
        }
    }
    assert!(sent, "the run ended before printing {mark:?}:\n{printed}");
    (child.wait().expect("char_lm ends"), printed)
}

/// Every line `piece` printed appears in `reference`, in one contiguous run.
fn assert_part_of(piece: &[String], reference: &[String]) {
    let Some(first) = piece.first() else { return };
    let start = reference
        .iter()
        .position(|l| l == first)
        .unwrap_or_else(|| panic!("{first:?} is not in the uninterrupted run"));
    assert_eq!(
        piece,
        &reference[start..start + piece.len()],
        "the resumed run printed other lines"
    );
}

fn resume_to_end(dir: &Path, threads: usize) -> Vec<String> {
    let resume = state(dir).display().to_string();
    record(&succeed(char_lm(
        &args(dir, threads),
        &["--resume", &resume],
    )))
}

#[test]
fn killed_three_times_and_resumed_the_run_ends_as_if_uninterrupted() {
    let (reference, final_weights) = reference();
    let dir = scratch("resume-sigkill");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    // Killed at 40 (mid-epoch), at 430 (just past the epoch's end) and at 700, alternating
    // the thread count, then resumed to the end.
    let mut command = char_lm(&args(&dir, 2), &[]);
    for (at, threads) in [(40, 2), (430, 1), (700, 2)] {
        let (status, printed) = interrupt(command, at, "KILL");
        assert!(!status.success());
        assert_part_of(&record(&printed), &reference);
        command = char_lm(
            &args(&dir, threads),
            &["--resume", &state(&dir).display().to_string()],
        );
    }
    let last = resume_to_end(&dir, 1);
    assert_part_of(&last, &reference);
    assert_eq!(last.last(), reference.last(), "the same sample");
    assert_eq!(weights(&dir, "latest"), final_weights);
}

#[test]
fn sigterm_and_sigint_save_the_state_and_exit_with_their_codes() {
    let (reference, final_weights) = reference();
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let dir = scratch(&format!("resume-sig{signal}"));
        let _ = std::fs::remove_dir_all(dir.join("runs"));
        let (status, printed) = interrupt(char_lm(&args(&dir, 2), &[]), 100, signal);
        assert_eq!(status.code(), Some(code), "{printed}");
        let said = printed.lines().last().unwrap_or_default();
        assert!(
            said.starts_with(&format!(
                "SIG{signal} received: saved the state after step "
            )) && said.contains("state.safetensors; continue with --resume"),
            "{said}"
        );
        let last = resume_to_end(&dir, 2);
        assert_part_of(&last, &reference);
        assert_eq!(weights(&dir, "latest"), final_weights);
    }
}

/// char_lm under a file-size limit of 64 KiB: the weights (32 KB) fit, the training state
/// (104 KB) does not. `trap` chooses what SIGXFSZ does: kill the process in the middle of
/// writing the state (the default), or make the write fail with EFBIG.
fn limited(dir: &Path, on_xfsz: &str) -> Output {
    let mut line = format!("trap {on_xfsz} XFSZ; ulimit -f 64; exec \"$0\" \"$@\"");
    if on_xfsz == "-" {
        line = "ulimit -f 64; exec \"$0\" \"$@\"".into();
    }
    Command::new("bash")
        .arg("-c")
        .arg(line)
        .arg(example("char_lm"))
        .args(args(dir, 2))
        .args(["--resume", &state(dir).display().to_string()])
        .output()
        .expect("bash runs")
}

#[test]
fn a_kill_or_a_failure_while_writing_the_state_keeps_the_previous_one() {
    use std::os::unix::process::ExitStatusExt;
    let (reference, final_weights) = reference();
    let dir = scratch("resume-fsize");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    let (_, _) = interrupt(char_lm(&args(&dir, 2), &[]), 40, "KILL");
    let before = std::fs::read(state(&dir)).expect("a state was saved");

    // Killed by SIGXFSZ in the middle of writing the state: the temp file is cut short, the
    // state is the one before.
    let out = limited(&dir, "-");
    assert_eq!(out.status.signal(), Some(25), "{out:?}");
    assert_eq!(std::fs::read(state(&dir)).unwrap(), before);
    let partial = std::fs::read_dir(dir.join("runs/latest"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".state.safetensors.tmp")
        })
        .expect("the write that was killed left its temp file");
    assert!(partial.metadata().unwrap().len() <= 64 * 1024);
    std::fs::remove_file(partial.path()).unwrap();

    // The write fails instead (SIGXFSZ ignored): a message, a failed exit, the old state.
    let out = limited(&dir, "''");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("state.safetensors")
            && said.contains("File too large")
            && said.contains("training stopped (the previous state file is intact)"),
        "{said}"
    );
    assert_eq!(std::fs::read(state(&dir)).unwrap(), before);
    let leftovers = std::fs::read_dir(dir.join("runs/latest"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0, "a failed write removes its temp file");

    // And the state still resumes to the uninterrupted result.
    let last = resume_to_end(&dir, 1);
    assert_part_of(&last, &reference);
    assert_eq!(weights(&dir, "latest"), final_weights);
}

#[test]
fn a_resume_with_other_settings_or_data_is_refused_and_weights_still_fine_tune() {
    let dir = scratch("resume-mismatch");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    let base = args(&dir, 2);
    succeed(char_lm(&set(&base, "--epochs", "1"), &["--steps", "3"]));
    let resume = state(&dir).display().to_string();
    let refused = |extra: &[&str], base: &[String]| {
        let out = char_lm(base, &[&["--resume", &resume][..], extra].concat())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = refused(&[], &set(&base, "--hidden", "16"));
    assert!(
        said.contains("refusing to resume")
            && said.contains("hidden: the state has 32, this run has 16"),
        "{said}"
    );
    let said = refused(&[], &set(&base, "--lr", "0.1"));
    assert!(
        said.contains("lr: the state has 0.002, this run has 0.1"),
        "{said}"
    );
    // Other data with the same characters: the hash differs.
    let other = dir.join("other.txt");
    let text = std::fs::read_to_string(dir.join("corpus.txt")).unwrap();
    std::fs::write(&other, text.chars().rev().collect::<String>()).unwrap();
    let said = refused(&[], &set(&base, "--data", &other.display().to_string()));
    assert!(said.contains("data_sha256: the state has"), "{said}");
    // A weights-only file cannot resume, but starts a new run.
    let weights_only = dir
        .join("runs/latest/char_lm.safetensors")
        .display()
        .to_string();
    let out = char_lm(&base, &["--resume", &weights_only])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("weights-only checkpoint, not a training state"));
    let said = succeed(char_lm(
        &base,
        &["--checkpoint", &weights_only, "--steps", "1"],
    ));
    assert!(said.contains("starting from the weights of"));
}

#[test]
fn a_new_run_never_destroys_an_earlier_one() {
    let dir = scratch("resume-versions");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    let base = args(&dir, 2);
    succeed(char_lm(&set(&base, "--epochs", "1"), &["--steps", "5"]));
    let first: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("runs/version_0"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    assert!(first.iter().any(|(n, _)| n == "char_lm.best.safetensors"));
    // A diverging run (learning rate 10⁹) pointed at the same --out.
    let out = char_lm(&set(&base, "--lr", "1e9"), &[]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("no best model (validation perplexity was never finite: the run diverged)"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_link(dir.join("runs/latest")).unwrap(),
        Path::new("version_1")
    );
    for (name, bytes) in &first {
        assert_eq!(
            &std::fs::read(dir.join("runs/version_0").join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }
}

/// Penn-Treebank-shaped files of random sentences over 30 words (PTB itself is not shipped).
fn fake_ptb(dir: &Path) -> PathBuf {
    let ptb = dir.join("ptb");
    std::fs::create_dir_all(&ptb).unwrap();
    let mut x: u64 = 1;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    for (name, sentences) in [("train", 1500), ("valid", 300), ("test", 300)] {
        let mut text = String::new();
        for _ in 0..sentences {
            for _ in 0..5 + next(10) {
                text.push_str(&format!(" w{}", next(30)));
            }
            text.push_str(" \n");
        }
        std::fs::write(ptb.join(format!("ptb.{name}.txt")), text).unwrap();
    }
    ptb
}

#[test]
fn word_lm_interrupted_and_resumed_ends_as_if_uninterrupted() {
    let dir = scratch("resume-word-lm");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    let ptb = fake_ptb(&dir);
    let base: Vec<String> = [
        "--epochs",
        "2",
        "--log-every",
        "5",
        "--save-every",
        "7",
        "--threads",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--data".into(), ptb.display().to_string()])
    .chain(["--out".into(), dir.join("runs").display().to_string()])
    .collect();
    let word_lm = |args: &[String]| {
        let mut c = Command::new(example("word_lm"));
        c.args(args);
        c
    };
    let reference = record(&succeed(word_lm(&set(&base, "--threads", "1"))));
    let reference_weights = weights_of(&dir, "version_0", "word_lm");
    let (status, printed) = interrupt(word_lm(&base), 30, "TERM");
    assert_eq!(status.code(), Some(143), "{printed}");
    assert_part_of(&record(&printed), &reference);
    let (status, _) = interrupt(
        word_lm(&set(&base, "--resume", &state(&dir).display().to_string())),
        60,
        "KILL",
    );
    assert!(!status.success());
    let last = record(&succeed(word_lm(&set(
        &base,
        "--resume",
        &state(&dir).display().to_string(),
    ))));
    assert_part_of(&last, &reference);
    assert_eq!(last.last(), reference.last(), "the same test perplexity");
    assert_eq!(weights_of(&dir, "latest", "word_lm"), reference_weights);
}

#[test]
fn translate_interrupted_and_resumed_ends_as_if_uninterrupted() {
    let dir = scratch("resume-translate");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    let base: Vec<String> =
        "--hidden 16 --embed 16 --epochs 2 --beam 1 --save-every 50 --threads 2"
            .split(' ')
            .map(String::from)
            .chain(["--out".into(), dir.join("runs").display().to_string()])
            .collect();
    let translate = |args: &[String]| {
        let mut c = Command::new(example("translate"));
        c.args(args);
        c
    };
    let reference = record(&succeed(translate(&set(&base, "--threads", "1"))));
    assert!(reference.iter().any(|l| l.starts_with("test BLEU = ")));
    let reference_weights = weights_of(&dir, "version_0", "translate");
    // The progress bar is hidden without a terminal: step numbers come from the state
    // messages, so interrupt on the first epoch's line (after 287 updates) and in epoch 2.
    let (status, printed) = interrupt_on(translate(&base), "epoch  1:", "INT");
    assert_eq!(status.code(), Some(130), "{printed}");
    let resume = set(&base, "--resume", &state(&dir).display().to_string());
    let last = record(&succeed(translate(&resume)));
    assert_part_of(&last, &reference);
    assert_eq!(last.last(), reference.last());
    assert!(last.iter().any(|l| l.starts_with("test BLEU = ")));
    assert_eq!(weights_of(&dir, "latest", "translate"), reference_weights);
}

#[test]
fn after_training_a_signal_ends_the_program_at_once() {
    let dir = scratch("resume-after");
    let _ = std::fs::remove_dir_all(dir.join("runs"));
    // A long sample after a few updates: SIGINT while it is written ends the program.
    let args = set(&set(&args(&dir, 1), "--epochs", "1"), "--length", "200000");
    let started = std::time::Instant::now();
    let (status, printed) = interrupt_on(char_lm(&args, &["--steps", "3"]), "sample (", "INT");
    assert_eq!(status.code(), Some(130), "{printed}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // The state written at the end of training is there.
    assert!(state(&dir).exists());
}
