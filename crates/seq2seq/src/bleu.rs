//! Corpus BLEU as sacreBLEU computes it by default: 13a tokenisation, n-grams up to 4, one
//! reference per segment, brevity penalty, and sacreBLEU's default exponential smoothing
//! (or none). Scores are on sacreBLEU's 0–100 scale.

use std::collections::HashMap;

/// How zero n-gram matches are smoothed (sacreBLEU's `smooth_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Smoothing {
    /// sacreBLEU's default ("exp", NIST's mteval-v13a): the k-th zero precision becomes
    /// 1/(2^k · total).
    #[default]
    Exp,
    /// No smoothing: a zero precision makes BLEU 0.
    None,
}

/// A corpus BLEU score and the statistics behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Bleu {
    /// BLEU, 0–100, as sacrebleu prints it.
    pub score: f64,
    /// n-gram precisions in percent, n = 1..4.
    pub precisions: [f64; 4],
    /// min(1, e^(1 − ref_len/sys_len)).
    pub brevity_penalty: f64,
    /// Tokens in the hypotheses.
    pub sys_len: usize,
    /// Tokens in the references.
    pub ref_len: usize,
}

fn is_13a_punct(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// Applies a two-character pattern substitution with Python `re.sub` semantics: scan left
/// to right, and after a match continue after it (matches never overlap).
fn substitute_pairs(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    emit: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            emit(chars[i], chars[i + 1], &mut out);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacreBLEU's `13a` tokenizer (mteval-v13a): splits off punctuation, and periods, commas
/// and dashes except inside numbers.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let digit = |c: char| c.is_ascii_digit();
    let dot_comma = |c: char| c == '.' || c == ',';
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 2);
    for c in format!(" {line} ").chars() {
        if is_13a_punct(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    let chars = substitute_pairs(
        &chars,
        |a, b| !digit(a) && dot_comma(b),
        |a, b, o| o.extend([a, ' ', b, ' ']),
    );
    let chars = substitute_pairs(
        &chars,
        |a, b| dot_comma(a) && !digit(b),
        |a, b, o| o.extend([' ', a, ' ', b]),
    );
    let chars = substitute_pairs(
        &chars,
        |a, b| digit(a) && b == '-',
        |a, b, o| o.extend([a, ' ', b, ' ']),
    );
    let s: String = chars.into_iter().collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ngram_counts<'a>(tokens: &'a [&'a str], n: usize) -> HashMap<&'a [&'a str], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Corpus BLEU of `hypotheses` against one reference each, with sacreBLEU's default smoothing.
pub fn corpus_bleu<S: AsRef<str>, R: AsRef<str>>(hypotheses: &[S], references: &[R]) -> Bleu {
    corpus_bleu_with(hypotheses, references, Smoothing::Exp)
}

/// Corpus BLEU with a chosen smoothing.
pub fn corpus_bleu_with<S: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[S],
    references: &[R],
    smoothing: Smoothing,
) -> Bleu {
    assert_eq!(
        hypotheses.len(),
        references.len(),
        "corpus_bleu: {} hypotheses but {} references",
        hypotheses.len(),
        references.len()
    );
    let (mut correct, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut sys_len, mut ref_len) = (0, 0);
    for (h, r) in hypotheses.iter().zip(references) {
        let (h, r) = (tokenize_13a(h.as_ref()), tokenize_13a(r.as_ref()));
        let ht: Vec<&str> = h.split_whitespace().collect();
        let rt: Vec<&str> = r.split_whitespace().collect();
        sys_len += ht.len();
        ref_len += rt.len();
        for n in 1..=4 {
            let rc = ngram_counts(&rt, n);
            for (gram, count) in ngram_counts(&ht, n) {
                total[n - 1] += count;
                correct[n - 1] += count.min(rc.get(gram).copied().unwrap_or(0));
            }
        }
    }
    compute(correct, total, sys_len, ref_len, smoothing)
}

/// sacreBLEU's `compute_bleu` (without effective order).
fn compute(
    correct: [usize; 4],
    total: [usize; 4],
    sys_len: usize,
    ref_len: usize,
    smoothing: Smoothing,
) -> Bleu {
    let brevity_penalty = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; 4];
    if correct.iter().all(|&c| c == 0) {
        return Bleu {
            score: 0.0,
            precisions,
            brevity_penalty,
            sys_len,
            ref_len,
        };
    }
    let mut smooth = 1.0;
    for n in 0..4 {
        if total[n] == 0 {
            break;
        }
        if correct[n] == 0 {
            if smoothing == Smoothing::Exp {
                smooth *= 2.0;
                precisions[n] = 100.0 / (smooth * total[n] as f64);
            }
        } else {
            precisions[n] = 100.0 * correct[n] as f64 / total[n] as f64;
        }
    }
    // sacreBLEU takes log(0) as −9999999999, which zeroes the score.
    let log_sum: f64 = precisions
        .iter()
        .map(|&p| if p > 0.0 { p.ln() } else { -9_999_999_999.0 })
        .sum();
    Bleu {
        score: brevity_penalty * (log_sum / 4.0).exp(),
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn matches_sacrebleu_on_the_copied_cases() {
        let text = include_str!("../../../tests/fixtures/bleu/sacrebleu_cases.json");
        let cases: Value = serde_json::from_str(text).unwrap();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        for case in cases["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let (hyps, refs) = (strings(&case["hypotheses"]), strings(&case["references"]));
            for (h, want) in hyps.iter().zip(strings(&case["tokenized"])) {
                assert_eq!(tokenize_13a(h), want, "{name}: tokenisation of {h:?}");
            }
            let exp = corpus_bleu(&hyps, &refs).score;
            let none = corpus_bleu_with(&hyps, &refs, Smoothing::None).score;
            assert!(
                (exp - case["bleu_exp"].as_f64().unwrap()).abs() < 0.01,
                "{name}: exp {exp} vs {}",
                case["bleu_exp"]
            );
            assert!(
                (none - case["bleu_none"].as_f64().unwrap()).abs() < 0.01,
                "{name}: none {none} vs {}",
                case["bleu_none"]
            );
        }
    }

    #[test]
    fn perfect_translation_scores_100() {
        let b = corpus_bleu(&["the cat sat on the mat ."], &["the cat sat on the mat ."]);
        approx::assert_relative_eq!(b.score, 100.0, max_relative = 1e-12);
        assert_eq!(b.brevity_penalty, 1.0);
    }
}
