"""HyProS in a plain PyTorch loop (nanoGPT style): a byte-level causal transformer on real WikiText-2.

    python examples/plain_loop.py --steps 200

The model returns hidden states; the loss module owns the λ schedule and fuses the head: no N×V logits.
"""

import argparse

import torch
from torch import nn
from wikitext import wikitext_text

from hypros_lm import LambdaSchedule, LinearScoringLoss

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=200)
p.add_argument("--loss", default="hypros", help="objective, as the stack's --loss")
args = p.parse_args()
torch.manual_seed(0)
seq_len, batch, width = 64, 16, 64
train = torch.frombuffer(bytearray(wikitext_text("train", 2_000_000).encode()), dtype=torch.uint8).long()
val = torch.frombuffer(bytearray(wikitext_text("valid", 200_000).encode()), dtype=torch.uint8).long()


def get_batch(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    i = torch.randint(len(data) - seq_len - 1, (batch,))
    x = torch.stack([data[j : j + seq_len] for j in i])
    return x, torch.stack([data[j + 1 : j + seq_len + 1] for j in i])


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.pos = nn.Embedding(256, width), nn.Embedding(seq_len, width)
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.norm(self.blocks(self.embed(x) + self.pos.weight[: x.shape[1]], mask=mask, is_causal=True))


body, head = Body(), nn.Linear(width, 256, bias=False)
schedule = LambdaSchedule(args.loss, total_steps=args.steps)
loss_fn = LinearScoringLoss(schedule=schedule)
optimizer = torch.optim.AdamW([*body.parameters(), *head.parameters()], lr=3e-3)
for step in range(args.steps):
    x, y = get_batch(train)
    loss = loss_fn(body(x), head.weight, y, step=step)  # (1 − λ(step))·log + λ(step)·Brier
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if step % (args.steps // 5) == 0 or step == args.steps - 1:
        with torch.no_grad():
            xv, yv = get_batch(val)
            loss_fn(body(xv), head.weight, yv, step=step)
        c = loss_fn.last_components
        print(f"step {step:4d} | loss {loss.item():.4f} | λ {schedule(step):.3f} | "
              f"val log {c['log']:.3f} brier {c['brier']:.4f} acc {c['accuracy']:.3f}")
