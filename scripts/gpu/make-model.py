#!/usr/bin/env python3
"""Random-weight GGUF shaped like Llama-3.1-8B, for GPU benchmarks (scripts/gpu/).

Two modes:
  make-model.py vocab SMOLLM2.gguf OUT.json.gz
      copies every `tokenizer.*` key of a GGUF (SmolLM2's: vocab 49,152, a ChatML template)
      into a small JSON file that can travel to the GPU machine.
  make-model.py model VOCAB.json.gz OUT.gguf [--layers 32] [--tiny]
      writes an F16 GGUF with llama's architecture and that tokenizer: hidden 4096, 32 layers,
      32 heads / 8 KV heads, FFN 14336 (`--tiny`: 64 / 2 layers / 4 heads / 2 KV heads / 128, for
      a quick check). Weights are normal(0, 0.02) fp16 slices of one random pool (never zeros:
      zeros can run faster than real data); norms are ones. Streamed tensor by tensor, so memory
      stays near the pool's size. Quantize with llama-quantize afterwards.

Needs numpy and llama.cpp's gguf-py (PYTHONPATH=<llama.cpp>/gguf-py).
"""
import argparse
import gzip
import json
import sys
import time

import numpy as np


def dump_vocab(src, dst):
    from gguf import GGUFReader, GGUFValueType

    r = GGUFReader(src)
    out = {}
    for name, f in r.fields.items():
        if not name.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == GGUFValueType.ARRAY:
            et = f.types[-1]
            if et == GGUFValueType.STRING:
                vals = [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data]
            else:
                vals = [f.parts[i].tolist()[0] for i in f.data]
            out[name] = {"type": "array", "elem": et.name, "value": vals}
        elif t == GGUFValueType.STRING:
            out[name] = {"type": "STRING", "value": bytes(f.parts[f.data[0]]).decode("utf-8", "surrogateescape")}
        else:
            out[name] = {"type": t.name, "value": f.parts[f.data[0]].tolist()[0]}
    with gzip.open(dst, "wt", encoding="utf-8") as fh:
        json.dump(out, fh)
    print(f"{len(out)} tokenizer keys -> {dst}", file=sys.stderr)


def add_vocab(w, vocab):
    from gguf import GGUFValueType

    for name, v in vocab.items():
        if v["type"] == "array":
            et = GGUFValueType[v["elem"]]
            w.add_key_value(name, v["value"], GGUFValueType.ARRAY, sub_type=et)
        else:
            w.add_key_value(name, v["value"], GGUFValueType[v["type"]])


def make_model(vocab_path, dst, tiny, layers):
    import gguf

    with gzip.open(vocab_path, "rt", encoding="utf-8") as fh:
        vocab = json.load(fh)
    n_vocab = len(vocab["tokenizer.ggml.tokens"]["value"])
    if tiny:
        d, n_layer, n_head, n_kv, ff = 64, 2, 4, 2, 128
    else:
        d, n_layer, n_head, n_kv, ff = 4096, 32, 32, 8, 14336
    if layers:
        n_layer = layers
    hd = d // n_head
    arch = "llama"
    w = gguf.GGUFWriter(dst, arch)
    w.add_name("random-llama-3.1-8b-shape" if not tiny else "random-tiny")
    w.add_context_length(8192)
    w.add_embedding_length(d)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    add_vocab(w, vocab)

    # (name, numpy shape (rows, cols) = (ne1, ne0), dtype)
    tensors = [("token_embd.weight", (n_vocab, d), np.float16)]
    for i in range(n_layer):
        p = f"blk.{i}."
        tensors += [
            (p + "attn_norm.weight", (d,), np.float32),
            (p + "attn_q.weight", (d, d), np.float16),
            (p + "attn_k.weight", (n_kv * hd, d), np.float16),
            (p + "attn_v.weight", (n_kv * hd, d), np.float16),
            (p + "attn_output.weight", (d, d), np.float16),
            (p + "ffn_norm.weight", (d,), np.float32),
            (p + "ffn_gate.weight", (ff, d), np.float16),
            (p + "ffn_up.weight", (ff, d), np.float16),
            (p + "ffn_down.weight", (d, ff), np.float16),
        ]
    tensors += [("output_norm.weight", (d,), np.float32), ("output.weight", (n_vocab, d), np.float16)]
    for name, shape, dt in tensors:
        n = int(np.prod(shape))
        w.add_tensor_info(name, shape, np.dtype(dt), n * np.dtype(dt).itemsize)

    t0 = time.time()
    rng = np.random.default_rng(1234)
    biggest = max(int(np.prod(s)) for _, s, dt in tensors if dt == np.float16)
    pool = (rng.standard_normal(biggest + (1 << 20), dtype=np.float32) * 0.02).astype(np.float16)
    w.write_header_to_file(dst)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, dt in tensors:
        n = int(np.prod(shape))
        if dt == np.float32:
            arr = np.ones(shape, dtype=np.float32)
        else:
            off = int(rng.integers(0, len(pool) - n + 1))
            arr = pool[off : off + n].reshape(shape)
        w.write_tensor_data(arr)
    w.close()
    params = sum(int(np.prod(s)) for _, s, _ in tensors)
    print(f"{dst}: {params / 1e9:.2f} B parameters, {time.time() - t0:.0f} s", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vocab")
    v.add_argument("src")
    v.add_argument("dst")
    m = sub.add_parser("model")
    m.add_argument("vocab")
    m.add_argument("dst")
    m.add_argument("--tiny", action="store_true")
    m.add_argument("--layers", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "vocab":
        dump_vocab(a.src, a.dst)
    else:
        make_model(a.vocab, a.dst, a.tiny, a.layers)


if __name__ == "__main__":
    main()
