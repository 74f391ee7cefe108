//! The translation data: the PyTorch tutorial's filtered English–French pairs (or all of
//! them), its reproducible train/valid/test split, and Multi30k from a local directory.

use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;
use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

/// (source, target) sentences, normalised, tokens separated by single spaces.
pub type Pairs = Vec<(String, String)>;

pub struct Corpus {
    pub train: Pairs,
    pub valid: Pairs,
    pub test: Pairs,
}

/// The tutorial's English prefixes: "i am", "he is", ... with their contractions.
const ENG_PREFIXES: [&str; 12] = [
    "i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ", "we are",
    "we re ", "they are", "they re ",
];
const MAX_TOKENS: usize = 10;

/// The tutorial's `normalizeString`: lower-case, NFD with combining marks dropped, a space
/// before `. ! ?`, then every run of characters other than a–z, `!`, `?` becomes one space.
pub fn normalize(s: &str) -> String {
    let ascii: String = s
        .trim()
        .to_lowercase()
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect();
    let mut out = String::with_capacity(ascii.len());
    let mut gap = false;
    for c in ascii.chars() {
        if c.is_ascii_lowercase() || c == '!' || c == '?' {
            if gap || ((c == '!' || c == '?') && !out.is_empty()) {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    out.trim().to_string()
}

fn read_text(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let gzip = path.extension().is_some_and(|e| e == "gz");
    text_of(&path.display().to_string(), &bytes, gzip)
}

/// A file's bytes as text, gunzipped first if `gzip`; `name` names the file in errors.
pub fn text_of(name: &str, bytes: &[u8], gzip: bool) -> Result<String, String> {
    let mut unzipped = Vec::new();
    let bytes = if gzip {
        GzDecoder::new(bytes)
            .read_to_end(&mut unzipped)
            .map_err(|e| format!("{name}: not valid gzip: {e}"))?;
        &unzipped[..]
    } else {
        bytes
    };
    String::from_utf8(bytes.to_vec()).map_err(|e| format!("{name}: not UTF-8 ({e})"))
}

/// French→English pairs from the tutorial's file: the filtered 11,445 by default, or every
/// pair with `full`.
pub fn eng_fra(path: &Path, full: bool) -> Result<Pairs, String> {
    eng_fra_pairs(&path.display().to_string(), &read_text(path)?, full)
}

/// [`eng_fra`] from the file's text; `name` names it in errors.
pub fn eng_fra_pairs(name: &str, text: &str, full: bool) -> Result<Pairs, String> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let (eng, fra) = line
            .split_once('\t')
            .ok_or_else(|| format!("{name}: line {} has no TAB", n + 1))?;
        let (eng, fra) = (normalize(eng), normalize(fra));
        let short = |s: &str| s.split(' ').count() < MAX_TOKENS;
        if full || (short(&eng) && short(&fra) && ENG_PREFIXES.iter().any(|p| eng.starts_with(p))) {
            pairs.push((fra, eng));
        }
    }
    if pairs.len() < 10 {
        return Err(format!(
            "{name}: {} sentence pairs; the split needs at least 10 (one in ten for test and validation)",
            pairs.len()
        ));
    }
    Ok(pairs)
}

/// In file order: index % 10 == 9 is test, == 8 is validation, the rest is training data.
pub fn split(pairs: Pairs) -> Corpus {
    let mut c = Corpus {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
    };
    for (i, p) in pairs.into_iter().enumerate() {
        match i % 10 {
            9 => c.test.push(p),
            8 => c.valid.push(p),
            _ => c.train.push(p),
        }
    }
    c
}

/// Lower-cases and splits punctuation off words (Multi30k is plain text).
fn tokenize_plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.trim().to_lowercase().chars() {
        if c.is_alphanumeric() || c == '\'' || c.is_whitespace() {
            out.push(c);
        } else {
            out.push(' ');
            out.push(c);
            out.push(' ');
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Multi30k from `dir` (`train.de`, `val.de`, `test_2016_flickr.de`, ... ).
pub fn multi30k(dir: &Path, src: &str, tgt: &str) -> Result<Corpus, String> {
    let pairs = |name: &str| -> Result<Pairs, String> {
        let [s, t] = [src, tgt].map(|lang| read_text(&dir.join(format!("{name}.{lang}"))));
        multi30k_pairs(&format!("{}/{name}.{src}|{tgt}", dir.display()), &s?, &t?)
    };
    Ok(Corpus {
        train: pairs("train")?,
        valid: pairs("val")?,
        test: pairs("test_2016_flickr")?,
    })
}

/// The pairs of one Multi30k part from its source and target texts (line n of one is the
/// translation of line n of the other); `name` names them in errors. A part without any
/// pair is an error.
pub fn multi30k_pairs(name: &str, src: &str, tgt: &str) -> Result<Pairs, String> {
    let (s, t): (Vec<String>, Vec<String>) = (
        src.lines().map(tokenize_plain).collect(),
        tgt.lines().map(tokenize_plain).collect(),
    );
    if s.len() != t.len() {
        return Err(format!(
            "{name}: the source has {} lines but the target has {}",
            s.len(),
            t.len()
        ));
    }
    let pairs: Pairs = s
        .into_iter()
        .zip(t)
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .collect();
    if pairs.is_empty() {
        return Err(format!("{name}: no sentence pairs"));
    }
    Ok(pairs)
}
