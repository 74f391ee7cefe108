//! Reading a text corpus: a missing, unreadable, empty or non-UTF-8 file is an error that
//! names the file and says why.

use std::fmt;
use std::path::{Path, PathBuf};

/// A corpus that cannot be used, and why.
#[derive(Debug)]
pub struct CorpusError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for CorpusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for CorpusError {}

/// The whole file as text.
pub fn read_text(path: &Path) -> Result<String, CorpusError> {
    let bytes = std::fs::read(path).map_err(|e| CorpusError {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text_of(path, bytes)
}

/// A file's bytes as text: empty or non-UTF-8 bytes are an error; `path` names the file in
/// it.
pub fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, CorpusError> {
    let err = |reason: String| CorpusError {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(err("the file is empty".into()));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        err(format!("not valid UTF-8 (first bad byte at offset {at})"))
    })
}

/// The file's words, line by line, with `<eos>` at the end of each line (the PTB convention).
pub fn read_words(path: &Path) -> Result<Vec<String>, CorpusError> {
    Ok(words_of(&read_text(path)?))
}

/// The words of a text, line by line, with `<eos>` at the end of each line.
pub fn words_of(text: &str) -> Vec<String> {
    text.lines()
        .flat_map(|line| {
            line.split_whitespace()
                .map(str::to_string)
                .chain(std::iter::once("<eos>".to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_errors() {
        let dir = std::env::temp_dir().join(format!("recur-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.txt");
        let e = read_text(&missing).unwrap_err();
        assert!(e.to_string().starts_with(&missing.display().to_string()));
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, b"").unwrap();
        assert!(read_text(&empty)
            .unwrap_err()
            .to_string()
            .ends_with("the file is empty"));
        let binary = dir.join("binary.txt");
        std::fs::write(&binary, b"abc\xff\xfe").unwrap();
        assert!(read_text(&binary)
            .unwrap_err()
            .to_string()
            .contains("not valid UTF-8 (first bad byte at offset 3)"));
        let words = dir.join("words.txt");
        std::fs::write(&words, "a b\nc\n").unwrap();
        assert_eq!(
            read_words(&words).unwrap(),
            ["a", "b", "<eos>", "c", "<eos>"]
        );
    }
}
