#!/usr/bin/env python3
"""More sequence-layer fixtures in the exact format of tools/torch_fixtures.py (it is
imported and its `make` is called), for option combinations its own set lacks.

Usage: python tools/extra_rnn_fixtures.py tests/fixtures/rnn
"""
import json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_fixtures as tf
from safetensors.torch import save_file

# name: mode, input_size, hidden_size, num_layers, bidirectional, batch_first, bias, nonlinearity, T, B, lengths, proj_size
EXTRA = {
    "lstm_proj_bidir_varlen_bf": ("LSTM", 4, 5, 2, True, True, True, None, 5, 3, [3, 5, 1], 2),
    "rnn_tanh_3layer_nobias_varlen": ("RNN", 3, 4, 3, False, False, False, "tanh", 4, 3, [4, 2, 3], 0),
    "rnn_relu_bidir_bf_varlen": ("RNN", 2, 3, 1, True, True, True, "relu", 6, 2, [2, 6], 0),
    "gru_bidir_bf_varlen_2layer": ("GRU", 3, 4, 2, True, True, True, None, 5, 4, [5, 1, 3, 2], 0),
    "lstm_nobias_3layer_bidir": ("LSTM", 2, 3, 3, True, False, False, None, 3, 2, None, 0),
}
out = sys.argv[1]
for i, (name, spec) in enumerate(EXTRA.items()):
    tensors, cfg = tf.make(name, spec, 100 + i)
    save_file(tensors, os.path.join(out, name + ".safetensors"), metadata={"config": json.dumps(cfg)})
    print(name, cfg)
