//! Corpus chrF as sacreBLEU computes it by default (chrF2): character n-grams of orders 1–6
//! with whitespace removed, statistics summed over the corpus, and the F-score (β = 2) of the
//! precision and recall averaged over the orders that occur. On sacreBLEU's 0–100 scale.

use std::collections::HashMap;

const ORDER: usize = 6;
const BETA: f64 = 2.0;

fn char_ngrams(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut counts = HashMap::new();
    if chars.len() >= n {
        for w in chars.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Corpus chrF of `hypotheses` against one reference each.
pub fn corpus_chrf<S: AsRef<str>, R: AsRef<str>>(hypotheses: &[S], references: &[R]) -> f64 {
    assert_eq!(
        hypotheses.len(),
        references.len(),
        "corpus_chrf: {} hypotheses but {} references",
        hypotheses.len(),
        references.len()
    );
    // Per order: hypothesis n-grams, reference n-grams, matches.
    let mut stats = [[0usize; 3]; ORDER];
    for (h, r) in hypotheses.iter().zip(references) {
        let squeeze = |s: &str| {
            s.chars()
                .filter(|c| !c.is_whitespace())
                .collect::<Vec<char>>()
        };
        let (h, r) = (squeeze(h.as_ref()), squeeze(r.as_ref()));
        for (n, st) in stats.iter_mut().enumerate() {
            let (hc, rc) = (char_ngrams(&h, n + 1), char_ngrams(&r, n + 1));
            st[0] += hc.values().sum::<usize>();
            st[1] += rc.values().sum::<usize>();
            st[2] += hc
                .iter()
                .map(|(g, &c)| c.min(rc.get(g).copied().unwrap_or(0)))
                .sum::<usize>();
        }
    }
    let (mut precision, mut recall, mut effective) = (0.0, 0.0, 0);
    for [hyp, reference, matched] in stats {
        if hyp > 0 && reference > 0 {
            precision += matched as f64 / hyp as f64;
            recall += matched as f64 / reference as f64;
            effective += 1;
        }
    }
    if effective == 0 {
        return 0.0;
    }
    let (p, r) = (precision / effective as f64, recall / effective as f64);
    let f = BETA * BETA;
    if p + r > 0.0 {
        100.0 * (1.0 + f) * p * r / (f * p + r)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn matches_sacrebleu_chrf_on_the_copied_cases() {
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
            let got = corpus_chrf(&strings(&case["hypotheses"]), &strings(&case["references"]));
            let want = case["chrf"].as_f64().unwrap();
            assert!(
                (got - want).abs() < 0.01,
                "{}: chrF {got} vs sacreBLEU {want}",
                case["name"]
            );
        }
    }
}
