#!/usr/bin/env python3
"""Convert a DeepSeek-V3-architecture safetensors checkpoint (for example one written by
`dsinfer synth`) into a GGUF file that llama.cpp loads as its `deepseek2` architecture.

Only numpy and llama.cpp's own gguf-py are needed (no torch, no transformers): give the
llama.cpp checkout with --llama-cpp (its gguf-py folder is put on the import path).

The tensor names and metadata keys follow what llama.cpp's deepseek2 loader reads: the MLA
kv_b projection is split into per-head k_b (transposed) and v_b, the routed experts of a layer are
stacked into one 3-D tensor per projection, and the checkpoint's FP8 blocks are dequantized with
their weight_scale_inv grid before being written in the requested type (q8_0, q4_0, bf16 or f32;
norms, biases and the router stay f32). The token embedding and the output head are written in
--head-type (default bf16, f32 with --type f32): dsinfer keeps them as stored in every weight
format (bf16 in DeepSeek's release and in `dsinfer synth`), so a benchmark of both programs on
"the same weights" must not give llama.cpp a q8_0 or q4_0 head (on a 2-layer V3-width model with
32 000 tokens the bf16 head is 0.46 of the 1.45 GB a decode step reads). The vocabulary is
written as `none` with vocab_size dummy tokens: enough for llama-bench and for token-id prompts,
no text tokenizer.

usage: dsinfer-to-gguf.py --llama-cpp DIR --model CKPT_DIR --out FILE.gguf [--type q8_0]
                         [--head-type auto|same|q8_0|q4_0|bf16|f32]
"""
import argparse
import json
import mmap
import os
import struct
import sys

import numpy as np


def die(msg):
    sys.stderr.write("dsinfer-to-gguf: " + msg + "\n")
    sys.exit(2)


class Checkpoint:
    """Tensors of every *.safetensors file of a directory, read lazily through mmap."""

    def __init__(self, directory):
        self.tensors = {}
        self.maps = []
        names = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
        if not names:
            die(f"no .safetensors file in {directory}")
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.maps.append(m)
            (hlen,) = struct.unpack("<Q", m[:8])
            header = json.loads(m[8:8 + hlen])
            for tname, info in header.items():
                if tname == "__metadata__":
                    continue
                begin, end = info["data_offsets"]
                self.tensors[tname] = (m, 8 + hlen + begin, 8 + hlen + end, info["dtype"],
                                       tuple(info["shape"]))

    def has(self, name):
        return name in self.tensors

    def raw(self, name):
        if name not in self.tensors:
            die(f"tensor {name} is missing from the checkpoint")
        m, begin, end, dtype, shape = self.tensors[name]
        buf = memoryview(m)[begin:end]
        if dtype == "F32":
            return np.frombuffer(buf, dtype=np.float32).reshape(shape)
        if dtype == "BF16":
            u16 = np.frombuffer(buf, dtype=np.uint16).reshape(shape)
            return (u16.astype(np.uint32) << 16).view(np.float32)
        if dtype == "F8_E4M3":
            return FP8_TABLE[np.frombuffer(buf, dtype=np.uint8).reshape(shape)]
        die(f"tensor {name}: dtype {dtype} is not F32, BF16 or F8_E4M3")

    def f32(self, name):
        """The tensor as f32, an FP8 one multiplied by its 128x128 weight_scale_inv blocks."""
        w = self.raw(name)
        sname = name[: -len("weight")] + "weight_scale_inv"
        if name.endswith(".weight") and self.has(sname):
            s = self.raw(sname)
            rows, cols = w.shape
            full = np.repeat(np.repeat(s, 128, axis=0), 128, axis=1)[:rows, :cols]
            w = w * full
        return np.ascontiguousarray(w, dtype=np.float32)


def fp8_e4m3_table():
    t = np.zeros(256, dtype=np.float32)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        e = (b >> 3) & 0xF
        m = b & 0x7
        if e == 0xF and m == 0x7:
            t[b] = np.nan
        elif e == 0:
            t[b] = sign * (m / 8.0) * 2.0 ** -6
        else:
            t[b] = sign * (1.0 + m / 8.0) * 2.0 ** (e - 7)
    return t


FP8_TABLE = fp8_e4m3_table()


def plan_tensors(cfg, ck):
    """(gguf name, producer of the f32 numpy array, keep) in file order; keep is True for a
    tensor kept in f32, "head" for one written in --head-type, False for one in --type."""
    L = cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    nope, vdim = cfg["qk_nope_head_dim"], cfg["v_head_dim"]
    kv_lora = cfg["kv_lora_rank"]
    n_exp = cfg.get("n_routed_experts") or 0
    dense = cfg.get("first_k_dense_replace", 0)
    out = []

    def add(gname, fn, keep=False):
        out.append((gname, fn, keep))

    def hf(name):
        if not ck.has(name):
            die(f"tensor {name} is missing from the checkpoint")
        fn = lambda: ck.f32(name)  # noqa: E731
        fn.shape = ck.tensors[name][4]
        return fn

    add("token_embd.weight", hf("model.embed_tokens.weight"), "head")
    add("output_norm.weight", hf("model.norm.weight"), True)
    add("output.weight", hf("lm_head.weight"), "head")
    for i in range(L):
        p = f"model.layers.{i}"
        b = f"blk.{i}"
        add(f"{b}.attn_norm.weight", hf(f"{p}.input_layernorm.weight"), True)
        add(f"{b}.ffn_norm.weight", hf(f"{p}.post_attention_layernorm.weight"), True)
        add(f"{b}.attn_kv_a_norm.weight", hf(f"{p}.self_attn.kv_a_layernorm.weight"), True)
        if cfg.get("q_lora_rank"):
            add(f"{b}.attn_q_a_norm.weight", hf(f"{p}.self_attn.q_a_layernorm.weight"), True)
            add(f"{b}.attn_q_a.weight", hf(f"{p}.self_attn.q_a_proj.weight"))
            add(f"{b}.attn_q_b.weight", hf(f"{p}.self_attn.q_b_proj.weight"))
        else:
            add(f"{b}.attn_q.weight", hf(f"{p}.self_attn.q_proj.weight"))
        add(f"{b}.attn_kv_a_mqa.weight", hf(f"{p}.self_attn.kv_a_proj_with_mqa.weight"))

        def kv_b(part, p=p):
            w = ck.f32(f"{p}.self_attn.kv_b_proj.weight").reshape(H, nope + vdim, kv_lora)
            if part == "k":  # per head [kv_lora, nope]: k_b transposed
                return np.ascontiguousarray(w[:, :nope, :].transpose(0, 2, 1))
            return np.ascontiguousarray(w[:, nope:, :])  # per head [vdim, kv_lora]

        add(f"{b}.attn_k_b.weight", lambda kv_b=kv_b: kv_b("k"))
        add(f"{b}.attn_v_b.weight", lambda kv_b=kv_b: kv_b("v"))
        add(f"{b}.attn_output.weight", hf(f"{p}.self_attn.o_proj.weight"))
        if i < dense or n_exp == 0:
            for proj in ("gate", "up", "down"):
                add(f"{b}.ffn_{proj}.weight", hf(f"{p}.mlp.{proj}_proj.weight"))
            continue
        add(f"{b}.ffn_gate_inp.weight", hf(f"{p}.mlp.gate.weight"), True)
        if ck.has(f"{p}.mlp.gate.e_score_correction_bias"):
            add(f"{b}.exp_probs_b.bias", hf(f"{p}.mlp.gate.e_score_correction_bias"), True)
        for proj in ("gate", "up", "down"):
            def stack(proj=proj, p=p):
                first = ck.f32(f"{p}.mlp.experts.0.{proj}_proj.weight")
                a = np.empty((n_exp,) + first.shape, dtype=np.float32)
                a[0] = first
                for e in range(1, n_exp):
                    a[e] = ck.f32(f"{p}.mlp.experts.{e}.{proj}_proj.weight")
                return a
            add(f"{b}.ffn_{proj}_exps.weight", stack)
        for proj in ("gate", "up", "down"):
            add(f"{b}.ffn_{proj}_shexp.weight", hf(f"{p}.mlp.shared_experts.{proj}_proj.weight"))
    return out


def shape_of(ck, cfg, gname, fn):
    """The numpy shape of a planned tensor without materializing it."""
    if hasattr(fn, "shape"):
        return tuple(fn.shape)
    H = cfg["num_attention_heads"]
    if gname.endswith("attn_k_b.weight"):
        return (H, cfg["kv_lora_rank"], cfg["qk_nope_head_dim"])
    if gname.endswith("attn_v_b.weight"):
        return (H, cfg["v_head_dim"], cfg["kv_lora_rank"])
    if "_exps." in gname:
        i = gname.split(".")[1]
        proj = gname.split(".")[2].split("_")[1]
        return (cfg["n_routed_experts"],) + ck.tensors[
            f"model.layers.{i}.mlp.experts.0.{proj}_proj.weight"][4]
    die(f"no shape for {gname}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", required=True, help="llama.cpp checkout (its gguf-py is used)")
    ap.add_argument("--model", required=True, help="checkpoint directory (config.json, *.safetensors)")
    ap.add_argument("--out", required=True, help="GGUF file to write")
    ap.add_argument("--type", default="q8_0", choices=["q8_0", "q4_0", "bf16", "f32"],
                    help="type of the 2-D and 3-D weights (default q8_0)")
    ap.add_argument("--head-type", default="auto",
                    choices=["auto", "same", "q8_0", "q4_0", "bf16", "f32"],
                    help="type of token_embd and output (default auto: bf16, f32 with --type f32, "
                         "as dsinfer runs them; same: --type)")
    a = ap.parse_args()
    gguf_py = os.path.join(a.llama_cpp, "gguf-py")
    if not os.path.isdir(os.path.join(gguf_py, "gguf")):
        die(f"{a.llama_cpp} has no gguf-py/gguf folder: not a llama.cpp checkout")
    sys.path.insert(0, gguf_py)
    too_old = (f"{a.llama_cpp} is a llama.cpp older than its DeepSeek MLA support (gguf-py's "
               "GGUFWriter.add_key_length_mla, llama.cpp of April 2025 or later): use a newer checkout")
    try:
        import gguf  # noqa: E402 (from the checkout given)
    except ModuleNotFoundError as e:  # older gguf-py imported sentencepiece at load
        die(f"cannot import gguf-py from {gguf_py}: {e} (gguf-py of before April 2025 needs "
            f"sentencepiece); {too_old}")
    if not hasattr(gguf.GGUFWriter, "add_key_length_mla"):
        die(too_old)

    try:
        with open(os.path.join(a.model, "config.json")) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        die(f"cannot read {a.model}/config.json: {e}")
    if cfg.get("architectures", [""])[0] not in ("DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM"):
        die("config.json: architectures is not DeepseekV3ForCausalLM or DeepseekV2ForCausalLM")
    ck = Checkpoint(a.model)
    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0,
             "bf16": gguf.GGMLQuantizationType.BF16, "f32": gguf.GGMLQuantizationType.F32}
    head_name = {"auto": "f32" if a.type == "f32" else "bf16", "same": a.type}.get(a.head_type,
                                                                                 a.head_type)
    htype, qtype = qtype[head_name], qtype[a.type]

    w = gguf.GGUFWriter(a.out, "deepseek2")
    rs = cfg.get("rope_scaling") or {}
    w.add_name("dsinfer-synth")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(1)  # MLA as MQA over the latent
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_leading_dense_block_count(cfg.get("first_k_dense_replace", 0))
    w.add_vocab_size(cfg["vocab_size"])
    if cfg.get("q_lora_rank"):
        w.add_q_lora_rank(cfg["q_lora_rank"])
    w.add_kv_lora_rank(cfg["kv_lora_rank"])
    w.add_key_length(cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"])
    w.add_value_length(cfg["kv_lora_rank"])
    w.add_key_length_mla(cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"])
    w.add_value_length_mla(cfg["v_head_dim"])
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_expert_count(cfg["n_routed_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_expert_shared_count(cfg.get("n_shared_experts", 0))
    w.add_expert_weights_scale(float(cfg.get("routed_scaling_factor", 1.0)))
    w.add_expert_weights_norm(bool(cfg.get("norm_topk_prob", False)))
    if cfg.get("scoring_func") == "sigmoid":
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    else:
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
    if cfg.get("n_group", 1) > 1:
        w.add_expert_group_count(cfg["n_group"])
        w.add_expert_group_used_count(cfg["topk_group"])
    w.add_rope_dimension_count(cfg["qk_rope_head_dim"])
    if rs.get("type", rs.get("rope_type")) == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rs["factor"]))
        w.add_rope_scaling_orig_ctx_len(rs["original_max_position_embeddings"])
        if rs.get("mscale_all_dim") is not None:
            w.add_rope_scaling_yarn_log_mul(0.1 * float(rs["mscale_all_dim"]))
    w.add_tokenizer_model("none")
    w.add_file_type({"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
                     "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                     "f32": gguf.LlamaFileType.ALL_F32}[a.type])

    plan = plan_tensors(cfg, ck)
    # Pass 1: tensor infos only (shapes and byte counts), so that the data can be streamed.
    kinds = []
    for gname, fn, keep in plan:
        shape = shape_of(ck, cfg, gname, fn)
        t = htype if keep == "head" else qtype
        if keep is True or len(shape) < 2:
            t = gguf.GGMLQuantizationType.F32
        block, type_size = gguf.GGML_QUANT_SIZES[t]
        if shape[-1] % block:
            t, block, type_size = gguf.GGMLQuantizationType.F32, 1, 4
        size = int(np.prod(shape[:-1])) * (shape[-1] // block) * type_size
        w.add_tensor_info(gname, shape, np.float32, size, raw_dtype=t)
        kinds.append(t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    # Pass 2: the data, one tensor at a time.
    for (gname, fn, keep), t in zip(plan, kinds):
        data = fn()
        if t != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.quantize(data, t)
        w.write_tensor_data(np.ascontiguousarray(data))
        sys.stderr.write(f"  {gname} {t.name}\n")
    w.close()


if __name__ == "__main__":
    main()
