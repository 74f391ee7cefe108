//! recur-seq2seq: encoder-decoder models with attention, teacher forcing, decoding and BLEU.
