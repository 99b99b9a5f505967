"""The SD² training step in PyTorch, for `sd2-train bench-step`: the same towers (Hugging
Face CLIPModel with the given sizes, QuickGELU), LoRA (r=8, α=32, dropout 0.1) on the
attention projections of both towers with CLIP frozen, CLAM and the adapter, the three
losses of Eq. 6, backward and AdamW. Random inputs of the same shapes. Prints JSON:
{"images_per_second": …}.

    python reference_train_step.py CONFIG_JSON BATCH LABEL_TOKENS DESC_TOKENS WARMUP STEPS [DEVICE [THREADS [PRECISION]]]

THREADS: torch.set_num_threads (0 or absent: PyTorch's default, every core). PRECISION: fp32
(default) or bf16, the forward pass and the losses under torch.autocast in bfloat16 (the
weights, and so the optimizer, stay fp32). On CUDA the output also has the peak memory.
"""
import contextlib

import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel


class LoRA(nn.Module):
    def __init__(self, base: nn.Linear, r=8, alpha=32.0, dropout=0.1):
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.empty(base.in_features, r))
        nn.init.kaiming_uniform_(self.a.T, a=math.sqrt(5))
        self.b = nn.Parameter(torch.zeros(r, base.out_features))
        self.drop = nn.Dropout(dropout)
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + (self.drop(x) @ self.a @ self.b) * self.scale


class SD2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.clip = CLIPModel(cfg)
        for p in self.clip.parameters():
            p.requires_grad_(False)
        for tower in (self.clip.vision_model, self.clip.text_model):
            for layer in tower.encoder.layers:
                a = layer.self_attn
                a.q_proj, a.k_proj, a.v_proj, a.out_proj = (LoRA(m) for m in (a.q_proj, a.k_proj, a.v_proj, a.out_proj))
        d, p = cfg.vision_config.hidden_size, cfg.projection_dim
        self.clam = nn.MultiheadAttention(d, cfg.vision_config.num_attention_heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d + p, p), nn.Linear(p, p)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_bias = nn.Parameter(torch.tensor(-1 / 0.07))

    def image(self, pixels):
        out = self.clip.vision_model(pixel_values=pixels, output_hidden_states=True)
        cls = torch.stack([h[:, 0] for h in out.hidden_states[1:]], dim=1)
        sat = self.clam(cls, cls, cls, need_weights=False)[0].mean(1)
        last = self.clip.visual_projection(out.pooler_output)
        return self.fc2(F.gelu(self.fc1(torch.cat([sat, last], 1))))

    def text(self, ids):
        return self.clip.text_projection(self.clip.text_model(input_ids=ids).pooler_output)


def siglip(f, v, tau, b):
    logits = tau * F.normalize(f) @ F.normalize(v).T + b
    z = 2 * torch.eye(len(f), device=f.device) - 1
    return -F.logsigmoid(z * logits).sum() / len(f)


def ids(n, t, vocab, seed, device):
    r = torch.arange(n).unsqueeze(1)
    c = torch.arange(t).unsqueeze(0)
    x = 1 + (r * 7919 + c * 104729 + seed) % (vocab - 2)
    x[:, -1] = vocab - 1
    return x.to(device)


def main():
    c = json.loads(open(sys.argv[1]).read())
    batch, lt, dt, warmup, steps = (int(a) for a in sys.argv[2:7])
    device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
    threads = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    if threads > 0:
        torch.set_num_threads(threads)
    precision = sys.argv[9] if len(sys.argv) > 9 else "fp32"
    autocast = lambda: (torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
                        if precision == "bf16" else contextlib.nullcontext())
    v, t = c["vision"], c["text"]
    cfg = CLIPConfig(
        vision_config=dict(hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"], num_hidden_layers=v["num_hidden_layers"],
                           num_attention_heads=v["num_attention_heads"], image_size=v["image_size"], patch_size=v["patch_size"], hidden_act="quick_gelu"),
        text_config=dict(hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"], num_hidden_layers=t["num_hidden_layers"],
                         num_attention_heads=t["num_attention_heads"], vocab_size=t["vocab_size"], max_position_embeddings=t["max_position_embeddings"],
                         hidden_act="quick_gelu", eos_token_id=2),
        projection_dim=c["projection_dim"])
    torch.manual_seed(0)
    model = SD2(cfg).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
    side = v["image_size"]
    pixels = torch.randn(batch, 3, side, side, device=device)
    targets = torch.arange(batch, device=device) % 5
    labels, faces, scenes = ids(5, lt, t["vocab_size"], 1, device), ids(batch, dt, t["vocab_size"], 2, device), ids(batch, dt, t["vocab_size"], 3, device)
    for step in range(warmup + steps):
        if step == warmup:
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast():
            f = model.image(pixels)
            u = model.text(labels)
            tau = model.logit_scale.exp().clamp(max=100)
            lc = F.cross_entropy(tau * F.normalize(f) @ F.normalize(u).T, targets)
            un = F.normalize(u)
            ls = ((un @ un.T - torch.eye(5, device=device)) ** 2).sum()
            lf = siglip(f, model.text(faces), tau, model.logit_bias)
            le = siglip(f, model.text(scenes), tau, model.logit_bias)
            loss = 2.0 * lc + ls + lf + le
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device != "cpu":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    out = {"images_per_second": batch * steps / elapsed, "threads": torch.get_num_threads(), "device": device, "precision": precision}
    if device != "cpu":
        out["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
        out["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
