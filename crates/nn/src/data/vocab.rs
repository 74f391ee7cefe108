//! A vocabulary: tokens ↔ ids, reserved tokens first, then tokens by descending frequency
//! (ties in first-seen order), dropping those rarer than `min_freq`; unknown tokens map to
//! `<unk>` when the vocabulary has it.

use std::collections::HashMap;

/// Characters a vocabulary does not have, each once, in sorted order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownChars(pub Vec<char>);

impl std::fmt::Display for UnknownChars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let listed: Vec<String> = self.0.iter().map(|c| format!("{c:?}")).collect();
        write!(f, "characters not in the vocabulary: {}", listed.join(", "))
    }
}

impl std::error::Error for UnknownChars {}

/// Tokens and their ids (see the module comment for the order).
///
/// ```
/// use recur_nn::data::Vocab;
///
/// let vocab = Vocab::build("the cat saw the dog".split(' '), 1, &["<unk>"]);
/// assert_eq!(vocab.token(1), "the"); // most frequent first, after the reserved ones
/// assert_eq!(vocab.id("bird"), vocab.unk());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    index: HashMap<String, usize>,
    unk: Option<usize>,
}

/// The conventional name of the unknown token.
pub const UNK: &str = "<unk>";

impl Vocab {
    /// Builds from a token stream. `reserved` come first with ids 0, 1, ... (include
    /// [`UNK`] there to map unknown tokens to it).
    pub fn build<S: AsRef<str>>(
        tokens: impl IntoIterator<Item = S>,
        min_freq: usize,
        reserved: &[&str],
    ) -> Self {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        for (order, t) in tokens.into_iter().enumerate() {
            counts.entry(t.as_ref().to_string()).or_insert((0, order)).0 += 1;
        }
        let mut ranked: Vec<(String, (usize, usize))> = counts
            .into_iter()
            .filter(|(t, (n, _))| *n >= min_freq && !reserved.contains(&t.as_str()))
            .collect();
        ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        Self::from_tokens(
            reserved
                .iter()
                .map(|s| s.to_string())
                .chain(ranked.into_iter().map(|(t, _)| t)),
        )
    }

    /// A vocabulary of exactly these tokens, in order (duplicates keep their first id).
    pub fn from_tokens(tokens: impl IntoIterator<Item = String>) -> Self {
        let mut v = Vocab {
            tokens: Vec::new(),
            index: HashMap::new(),
            unk: None,
        };
        for t in tokens {
            if !v.index.contains_key(&t) {
                v.index.insert(t.clone(), v.tokens.len());
                v.tokens.push(t);
            }
        }
        v.unk = v.index.get(UNK).copied();
        v
    }

    /// A character vocabulary: every distinct character of `text`, in sorted order.
    pub fn of_chars(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_tokens(chars.into_iter().map(String::from))
    }

    /// Ids of the characters of `text`, or an error naming every character the vocabulary
    /// lacks (when it has no `<unk>` to stand for them).
    pub fn try_encode_chars(&self, text: &str) -> Result<Vec<usize>, UnknownChars> {
        let mut unknown: Vec<char> = text
            .chars()
            .filter(|c| self.id(c.encode_utf8(&mut [0u8; 4])).is_none())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if unknown.is_empty() {
            Ok(self.encode_chars(text))
        } else {
            Err(UnknownChars(unknown))
        }
    }

    /// Ids of the characters of `text` (unknown ones as `<unk>`, or dropped without it).
    pub fn encode_chars(&self, text: &str) -> Vec<usize> {
        let mut buf = [0u8; 4];
        text.chars()
            .filter_map(|c| self.id(c.encode_utf8(&mut buf)))
            .collect()
    }

    /// How many tokens, reserved ones included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens at all.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of a token, if it is in the vocabulary.
    pub fn get(&self, token: &str) -> Option<usize> {
        self.index.get(token).copied()
    }

    /// The id of a token, or of `<unk>`; `None` only if neither exists.
    pub fn id(&self, token: &str) -> Option<usize> {
        self.get(token).or(self.unk)
    }

    /// The id of `<unk>`, if the vocabulary has it.
    pub fn unk(&self) -> Option<usize> {
        self.unk
    }

    /// The token with this id.
    pub fn token(&self, id: usize) -> &str {
        &self.tokens[id]
    }

    /// Every token, by id.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Ids of the tokens, unknown ones as `<unk>` (or dropped if there is no `<unk>`).
    pub fn encode<S: AsRef<str>>(&self, tokens: impl IntoIterator<Item = S>) -> Vec<usize> {
        tokens
            .into_iter()
            .filter_map(|t| self.id(t.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_characters_are_named_once_each() {
        let v = Vocab::of_chars("abc");
        assert_eq!(v.try_encode_chars("cab"), Ok(vec![2, 0, 1]));
        let err = v.try_encode_chars("xbzx").unwrap_err();
        assert_eq!(err, UnknownChars(vec!['x', 'z']));
        assert_eq!(
            err.to_string(),
            "characters not in the vocabulary: 'x', 'z'"
        );
        let with_unk = Vocab::build(["a", "<unk>"], 1, &[UNK]);
        assert!(
            with_unk.try_encode_chars("q").is_ok(),
            "<unk> stands for it"
        );
    }

    #[test]
    fn reserved_first_then_by_frequency_with_min_freq_and_unk() {
        let words = "b a c a b a d".split(' ');
        let v = Vocab::build(words, 2, &["<pad>", UNK]);
        assert_eq!(v.tokens(), &["<pad>", "<unk>", "a", "b"]);
        assert_eq!(v.encode(["a", "c", "b"]), vec![2, 1, 3]);
        assert_eq!(v.token(3), "b");
        let no_unk = Vocab::build(["x", "y"], 1, &[]);
        assert_eq!(no_unk.encode(["x", "z"]), vec![0]);
        assert_eq!(no_unk.id("z"), None);
    }

    #[test]
    fn character_vocabulary_is_sorted_and_encodes() {
        let v = Vocab::of_chars("banana!");
        assert_eq!(v.tokens(), &["!", "a", "b", "n"]);
        assert_eq!(v.encode_chars("nab?"), vec![3, 1, 2]);
    }

    #[test]
    fn frequency_ties_keep_first_seen_order() {
        let v = Vocab::build("q w e".split(' '), 1, &[]);
        assert_eq!(v.tokens(), &["q", "w", "e"]);
    }
}
