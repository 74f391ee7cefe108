#!/usr/bin/env python3
"""Writes BLEU and chrF test cases computed by sacreBLEU (corpus BLEU, 13a tokenisation, one
reference, with the default exponential smoothing and with smoothing off; default chrF).

Usage: python tools/sacrebleu_cases.py > tests/fixtures/bleu/sacrebleu_cases.json
Needs: pip install sacrebleu
"""
import json, random
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

random.seed(0)
WORDS = ["i", "am", "you", "are", "he", "is", "she", "we", "they", "not", "very", "happy", "tired", "a",
         "teacher", "here", "sure", "!", "?", "good", "at", "it", "the", "best", "friend", "of", "mine"]


def sentence(n):
    return " ".join(random.choice(WORDS) for _ in range(n))


corpora = [
    ("perfect", ["i am happy .", "you are very tired !"], ["i am happy .", "you are very tired !"]),
    ("no overlap", ["foo bar baz qux"], ["i am happy ."]),
    ("short hypotheses, no 4-grams", ["i am", "he is"], ["i am happy", "he is tired"]),
    ("one 4-gram order empty", ["i am very happy", "he is"], ["i am very happy today", "he is here"]),
    ("brevity penalty", ["i am"], ["i am very happy to be here"]),
    ("longer than reference", ["i am very very happy to be here now"], ["i am happy"]),
    ("punctuation and numbers", ["It's 3.5 km, isn't it? (yes) 10-20 people; \"quoted\" & <tag>"],
     ["It's 3.5 km , isn't it ? ( yes ) 10 - 20 people ; \"quoted\" &amp; <tag>"]),
    ("html entities and dashes", ["a&quot;b &lt;c&gt; well-known 1-2 x.y 4,5 ,a .b"],
     ["a\"b <c> well-known 1 - 2 x . y 4,5 , a . b"]),
    ("empty hypothesis", ["", "i am happy"], ["i am happy", "i am happy"]),
    ("unicode", ["je suis très content", "où est-il ?"], ["je suis très heureux", "où est-il ?"]),
]
for k in range(8):
    refs = [sentence(random.randint(3, 9)) for _ in range(40)]
    hyps = [" ".join(w if random.random() < 0.7 else random.choice(WORDS) for w in r.split()[: random.randint(2, 10)])
            for r in refs]
    corpora.append((f"random corpus {k}", hyps, refs))

tok = Tokenizer13a()
cases = []
for name, hyps, refs in corpora:
    default = BLEU().corpus_score(hyps, [refs])
    none = BLEU(smooth_method="none").corpus_score(hyps, [refs])
    chrf = CHRF().corpus_score(hyps, [refs])
    cases.append(dict(name=name, hypotheses=hyps, references=refs, bleu_exp=default.score, bleu_none=none.score,
                      chrf=chrf.score, tokenized=[tok(h) for h in hyps]))
print(json.dumps(dict(sacrebleu=sacrebleu.__version__, cases=cases), indent=1, ensure_ascii=False))
