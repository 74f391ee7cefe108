//! Where an example finds the data shipped in the repository's `data/` folder: under the
//! working directory (a binary run from a checkout), else under the source tree it was built
//! from.

use std::path::{Path, PathBuf};

/// `data/<relative>` under the working directory or the source tree, or an error naming both
/// places and the flag that points elsewhere.
pub fn bundled(relative: &str) -> Result<PathBuf, String> {
    let here = Path::new("data").join(relative);
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(relative);
    if let Some(found) = [&here, &built].into_iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    Err(format!(
        "cannot find the bundled data file data/{relative} (looked in {} and {}): run from a \
         recur checkout or pass --data",
        here.display(),
        built.display()
    ))
}
