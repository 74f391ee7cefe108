//! Running the example binaries from integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example binary built for this test run (`target/<profile>/examples/NAME`). `cargo
/// test` without a target filter (the README's command) builds the examples before it runs
/// the tests; a binary older than its source means it did not, and the test says so rather
/// than run stale code.
pub fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("the test's path");
    let profile = deps
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let binary = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let single = examples.join(format!("{name}.rs"));
    let source = if single.exists() {
        single
    } else {
        examples.join(name).join("main.rs")
    };
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    assert!(
        modified(&binary) >= modified(&source),
        "{} is missing or older than {}: run the whole suite (cargo test --workspace --release), \
         which builds the examples, or cargo build --release --example {name} first",
        binary.display(),
        source.display()
    );
    binary
}

/// The first `chars` bytes of the bundled tinyshakespeare as `dir/corpus.txt` (written once).
pub fn shakespeare(dir: &Path, chars: usize) -> PathBuf {
    let corpus = dir.join("corpus.txt");
    if !corpus.exists() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tinyshakespeare/input.txt"),
        )
        .expect("tinyshakespeare");
        std::fs::write(&corpus, &text[..chars]).expect("the corpus is written");
    }
    corpus
}

/// A fresh directory for one test's files.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("recur-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// What `command` printed, after checking that it succeeded.
pub fn succeed(mut command: Command) -> String {
    let out = command.output().expect("the example runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What must not depend on how a run was carried out (interrupted and resumed, on several
/// ranks): the step, epoch and test lines, without their wall-clock seconds and speeds, and
/// everything from the sample on (char_lm's text, translate's translations) but the
/// closing list of written files.
pub fn record(stdout: &str) -> Vec<String> {
    let timeless = |line: &str| -> String {
        let line = line.split("; ").next().unwrap_or_default();
        let line = match line.rfind(" (") {
            Some(at) if line.ends_with(" s)") => &line[..at],
            _ => line,
        };
        let parts = line.split(", ");
        let kept: Vec<&str> = parts
            .filter(|p| !(p.ends_with(" s") || p.ends_with("/s")))
            .collect();
        kept.join(", ")
    };
    let mut lines = Vec::new();
    let mut in_sample = false;
    for line in stdout.lines() {
        in_sample |= line.starts_with("sample ");
        let kept = in_sample && !line.starts_with("wrote ");
        if kept
            || ["step ", "epoch ", "test "]
                .iter()
                .any(|p| line.starts_with(p))
        {
            lines.push(timeless(line));
        }
    }
    lines
}
