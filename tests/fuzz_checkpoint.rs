//! Hostile checkpoint files: a stable-Rust mutation fuzzer over the checkpoint parser. Every
//! mutation (truncation, bit flip, huge declared sizes, overlapping offsets, wrong dtypes,
//! non-UTF-8 names, a lying header length) must give `Ok` or a typed `Err`: never a panic.
//!
//! The normal test runs a few thousand mutations; for a long campaign:
//!     RECUR_FUZZ_SECONDS=600 cargo test --release --test fuzz_checkpoint -- --ignored --nocapture

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use recur::nn::checkpoint::{self, CheckpointError};
use recur::nn::{Linear, Lstm, ParamStore, RnnOptions};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

fn seed_file() -> (Vec<u8>, ParamStore<f32>) {
    let mut store = ParamStore::new();
    let mut rng = StdRng::seed_from_u64(0);
    Lstm::new(&mut store, "rnn", RnnOptions::new(3, 4), &mut rng);
    Linear::new(&mut store, "fc", 4, 2, true, &mut rng);
    let path = std::env::temp_dir().join(format!(
        "recur-fuzz-seed-{}.safetensors",
        std::process::id()
    ));
    checkpoint::save(
        &path,
        &store,
        None,
        HashMap::from([("epoch".into(), "1".into())]),
    )
    .unwrap();
    (std::fs::read(&path).unwrap(), store)
}

/// The JSON header of a safetensors file, and where the data starts.
fn header(bytes: &[u8]) -> (String, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(), 8 + n)
}

fn with_header(bytes: &[u8], new_header: &str) -> Vec<u8> {
    let (_, data_start) = header(bytes);
    let mut out = (new_header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new_header.as_bytes());
    out.extend_from_slice(&bytes[data_start..]);
    out
}

/// One random mutation of a valid file.
fn mutate(good: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let (h, _) = header(good);
    match rng.gen_range(0..10) {
        0 => good[..rng.gen_range(0..good.len())].to_vec(),
        1 => {
            let mut b = good.to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..b.len());
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            b
        }
        2 => {
            // A huge declared dimension.
            let huge = [u64::MAX / 3, 1 << 40, 1 << 62, 4_294_967_297][rng.gen_range(0..4)];
            with_header(
                good,
                &h.replacen("\"shape\":[", &format!("\"shape\":[{huge},"), 1),
            )
        }
        3 => {
            // Overlapping or out-of-range data offsets.
            let (a, b) = (rng.gen_range(0..400u64), rng.gen_range(0..400u64));
            let start = h.find("\"data_offsets\":[").unwrap();
            let end = start + h[start..].find(']').unwrap() + 1;
            with_header(
                good,
                &format!("{}\"data_offsets\":[{a},{b}]{}", &h[..start], &h[end..]),
            )
        }
        4 => {
            let dtype =
                ["F16", "BF16", "I64", "BOOL", "U8", "F64", "I32", "XYZ"][rng.gen_range(0..8)];
            with_header(good, &h.replacen("\"F32\"", &format!("\"{dtype}\""), 1))
        }
        5 => {
            // A non-UTF-8 name: raw bytes spliced into the header.
            let mut b = good.to_vec();
            let i = 8 + 2 + rng.gen_range(0..4);
            b[i] = 0xff;
            b
        }
        6 => {
            // A header length that lies.
            let mut b = good.to_vec();
            let n = [u64::MAX, 1 << 40, good.len() as u64, 0, 7][rng.gen_range(0..5)];
            b[..8].copy_from_slice(&n.to_le_bytes());
            b
        }
        7 => with_header(good, &h.replacen("rnn.", "", rng.gen_range(1..3))),
        8 => {
            // Random bytes after a plausible length prefix.
            let n = rng.gen_range(0..64);
            let mut b = (n as u64).to_le_bytes().to_vec();
            b.extend((0..n + rng.gen_range(0..64)).map(|_| rng.gen::<u8>()));
            b
        }
        _ => {
            let mut b = mutate(good, rng);
            b.extend((0..rng.gen_range(0..32)).map(|_| rng.gen::<u8>()));
            b
        }
    }
}

/// Parses and loads `bytes`; Err(description) if anything panicked.
fn survive(bytes: &[u8], store: &ParamStore<f32>, dir: &Path, k: usize) -> Result<(), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let parsed = checkpoint::parse(Path::new("mutant"), bytes);
        let path = dir.join(format!("mutant-{}.safetensors", k % 4));
        std::fs::write(&path, bytes).unwrap();
        let mut target = store.clone();
        let loaded = checkpoint::load(&path, &mut target, None);
        if loaded.is_err() {
            assert!(
                target.iter().zip(store.iter()).all(|(a, b)| a.1 == b.1),
                "a failed load changed parameters"
            );
        }
        (parsed.is_ok(), loaded.err())
    }));
    match outcome {
        Ok((_, Some(CheckpointError::Io { source, .. }))) => {
            Err(format!("unexpected I/O error {source}"))
        }
        Ok(_) => Ok(()),
        Err(p) => Err(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

fn campaign(budget: Duration, max: usize) -> (usize, usize) {
    let (good, store) = seed_file();
    let dir = std::env::temp_dir().join(format!("recur-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let (mut runs, mut accepted) = (0, 0);
    let start = Instant::now();
    while runs < max && start.elapsed() < budget {
        let bytes = mutate(&good, &mut rng);
        if let Err(e) = survive(&bytes, &store, &dir, runs) {
            let path = dir.join("crash.safetensors");
            std::fs::write(&path, &bytes).unwrap();
            panic!(
                "mutation {runs} ({} bytes, saved to {}): {e}",
                bytes.len(),
                path.display()
            );
        }
        accepted += usize::from(checkpoint::parse(Path::new("m"), &bytes).is_ok());
        runs += 1;
    }
    (runs, accepted)
}

#[test]
fn thousands_of_mutated_checkpoints_give_ok_or_typed_errors() {
    std::panic::set_hook(Box::new(|_| {}));
    let (runs, accepted) = campaign(Duration::from_secs(60), 5000);
    let _ = std::panic::take_hook();
    assert_eq!(runs, 5000);
    assert!(
        accepted < runs,
        "mutations must be rejected, {accepted} of {runs} parsed"
    );
}

#[test]
#[ignore = "long fuzz campaign; set RECUR_FUZZ_SECONDS"]
fn fuzz_for_a_while() {
    let seconds = std::env::var("RECUR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::panic::set_hook(Box::new(|_| {}));
    let (runs, accepted) = campaign(Duration::from_secs(seconds), usize::MAX);
    let _ = std::panic::take_hook();
    println!("{runs} mutated checkpoints in {seconds} s: all Ok or typed Err ({accepted} parsed as valid files)");
}

#[test]
fn a_shape_whose_size_overflows_is_malformed() {
    let (good, _) = seed_file();
    let (h, _) = header(&good);
    // [2^62, 4] f32 elements: 2^66 bytes, which wraps to 0 in 64-bit arithmetic.
    let start = h.find("\"shape\":[").unwrap();
    let end = start + h[start..].find(']').unwrap() + 1;
    let offsets = h.find("\"data_offsets\":[").unwrap();
    let offsets_end = offsets + h[offsets..].find(']').unwrap() + 1;
    let mut evil = format!(
        "{}\"shape\":[4611686018427387904,4]{}",
        &h[..start],
        &h[end..offsets]
    );
    evil.push_str(&format!("\"data_offsets\":[0,0]{}", &h[offsets_end..]));
    let err = checkpoint::parse(Path::new("evil"), &with_header(&good, &evil)).unwrap_err();
    assert!(matches!(err, CheckpointError::Malformed { .. }), "{err}");
}
