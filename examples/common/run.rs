//! What the training examples share so that no work is lost: a numbered folder per run under
//! `--out` with a stable `latest` link (a new run never overwrites an earlier one's model),
//! and SIGINT/SIGTERM turned into "finish this step, save the state, exit"; and what
//! `--bf16` means for a run and for the settings its resume must match.

use recur::tape::kernels::Precision;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The products' precision `--bf16` asks for.
pub fn products(bf16: bool) -> Precision {
    if bf16 {
        Precision::Bf16
    } else {
        Precision::Full
    }
}

/// Marks the settings a resume must match as a bf16 run's: only when it is one, so that
/// states saved before `--bf16` existed still resume.
pub fn mark_bf16(settings: &mut serde_json::Value, bf16: bool) {
    if bf16 {
        settings["bf16"] = serde_json::Value::Bool(true);
    }
}

/// The folder a run writes into.
pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    /// A new `version_N` folder under `out` (one past the highest there), with `out/latest`
    /// pointing at it, as PyTorch Lightning numbers its runs.
    pub fn create(out: &Path) -> Result<Self, String> {
        let err = |e: std::io::Error| format!("{}: {e}", out.display());
        std::fs::create_dir_all(out).map_err(err)?;
        let highest = std::fs::read_dir(out)
            .map_err(err)?
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("version_")?.parse::<u64>().ok()
            })
            .max();
        let mut n = highest.map_or(0, |h| h + 1);
        // create_dir fails if another run took the number first: take the next one.
        let dir = loop {
            let dir = out.join(format!("version_{n}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            }
        };
        point_latest(out, &format!("version_{n}")).map_err(err)?;
        Ok(RunDir { dir })
    }

    /// The folder of the state file a run resumes from: it goes on writing there (the
    /// folder `latest` pointed at, not whatever `latest` points at later).
    pub fn of_state(state: &Path) -> Self {
        let dir = state
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = match (std::fs::read_link(dir), dir.parent()) {
            (Ok(target), Some(parent)) => parent.join(target),
            _ => dir.to_path_buf(),
        };
        RunDir { dir }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Replaces `out/latest` by a relative symlink to `target`, atomically (a new link renamed
/// over the old one).
#[cfg(unix)]
fn point_latest(out: &Path, target: &str) -> std::io::Result<()> {
    let tmp = out.join(format!(".latest.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, out.join("latest"))
}

#[cfg(not(unix))]
fn point_latest(out: &Path, target: &str) -> std::io::Result<()> {
    std::fs::write(out.join("latest.txt"), target)
}

/// SIGINT and SIGTERM, noted rather than obeyed at once: the loop asks after each step. A
/// second signal of either kind exits at once. Once it is dropped, the first signal exits at
/// once (after training, during the final evaluation, there is nothing left to save).
pub struct Signals {
    received: Arc<AtomicUsize>,
    handlers: Vec<signal_hook::SigId>,
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.handlers.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        // The OS-level handler stays signal-hook's, so exit as the first signal arrives.
        let now = Arc::new(AtomicBool::new(true));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let _ = signal_hook::flag::register_conditional_shutdown(
                signal,
                128 + signal,
                Arc::clone(&now),
            );
        }
    }
}

impl Signals {
    pub fn install() -> Result<Self, String> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let received = Arc::new(AtomicUsize::new(0));
        let first = Arc::new(AtomicBool::new(false));
        let mut handlers = Vec::new();
        for signal in [SIGINT, SIGTERM] {
            let err = |e: std::io::Error| format!("cannot install the signal handlers: {e}");
            // Runs first: exits only if an earlier signal already arrived.
            handlers.push(
                flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&first))
                    .map_err(err)?,
            );
            handlers.push(flag::register(signal, Arc::clone(&first)).map_err(err)?);
            handlers.push(
                flag::register_usize(signal, Arc::clone(&received), signal as usize)
                    .map_err(err)?,
            );
        }
        Ok(Signals { received, handlers })
    }

    /// The signal that asked the run to stop, if one did.
    pub fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}

/// What a run stopped by `signal` after `step` says: where its state is and how to go on.
pub fn saved_on_signal(signal: i32, step: usize, state: &Path) -> String {
    format!(
        "{} received: saved the state after step {step} to {}; continue with --resume {}",
        signal_name(signal),
        state.display(),
        state.display()
    )
}

/// The name of a stop signal, for messages.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
