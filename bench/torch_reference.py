#!/usr/bin/python3
"""PyTorch versions of flowlib's models, for checking and for speed comparisons.

The architectures are flowlib's own (see README "Model specs"):

  affine_coupling    z = m x + (1-m) (x exp(s) + t),  s = (1-m) scale tanh(raw),
                     [raw, t] = MLP(m x); logdet += sum s
  additive_coupling  z = x + (1-m) t,  t = MLP(m x)
  diagonal_scale     z = x exp(s), logdet += sum s
  batch_norm         batch statistics (biased variance) in training, running
                     averages (unbiased batch variance, momentum 0.1) otherwise
  made_affine        [mu, alpha] = MADE(u) (masked MLP, masks from the saved
                     order and mask_seed); maf: z = (x - mu(x)) exp(-alpha(x)),
                     one pass, and a D-pass inverse; iaf: the other way round
  actnorm            z = (x + bias) exp(log_scale), data-dependent init on the
                     first training batch
  invertible_linear  z = x W^T, W = P L (U + diag(sign exp(log_s))) ("lu") or
                     a plain matrix
  planar, radial     Rezende & Mohamed's flows (inverse: Newton / closed form)
  base               standard normal, standard logistic (nice), or made_mog
                     (MADE MoG): per dimension a mixture of C Gaussians whose
                     logits, means and log-scales a MADE computes from z_<d
  context_dim > 0    conditional flows: a coupling's MLP reads [m x, context];
                     a MADE adds context Wc^T to its first hidden layer and
                     context Wo^T to its outputs ("<made>.context.weight",
                     "<made>.context_out.weight", the latter starting at zero)

MLPs are Linear -> ReLU -> Linear -> ReLU -> Linear with torch.nn.Linear's
default initialization, U(-1/sqrt(in), 1/sqrt(in)) for weights and biases, as
flowlib; the last layer starts at zero. Parameter names are flowlib's
("t0.net.0.weight", "t0.scale", "t1.made.2.bias", "t3.log_s", ...), so a
flowlib safetensors file loads with load_flowlib() (a small reader: the
safetensors package is not needed). The optimizer is
torch.optim.Adam(lr=1e-3), flowlib's default.

  /usr/bin/python3 bench/torch_reference.py --check DIR [--models maf,glow]
      compares with what `flowlib_bench --check DIR` wrote (same weights in
      both: log_prob, forward, inverse, loss gradients, one Adam step).
"""
import argparse
import copy
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_TWO_PI = math.log(2.0 * math.pi)


# --- data (flowlib_bench.cpp: bench_data) ----------------------------------

def _splitmix64(x):
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def bench_data(rows, dim, first=0):
    k = np.arange(first, first + rows * dim, dtype=np.uint64)
    two = np.uint64(2)
    u1 = ((_splitmix64(two * k) >> np.uint64(40)).astype(np.float64) + 0.5) / 16777216.0
    u2 = ((_splitmix64(two * k + np.uint64(1)) >> np.uint64(40)).astype(np.float64) + 0.5) / 16777216.0
    x = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return x.astype(np.float32).reshape(rows, dim)


# Conditional models' context rows: the same generator further on
# (flowlib_bench.cpp: bench_context).
CONTEXT_FIRST = 1 << 40


def bench_context(rows, context_dim):
    return bench_data(rows, context_dim, CONTEXT_FIRST)


# --- safetensors ------------------------------------------------------------

def read_safetensors(path):
    """(tensors by name as numpy arrays, metadata dict)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": np.float32, "I32": np.int32, "F64": np.float64, "I64": np.int64}
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(blob, dtype=dtypes[info["dtype"]], count=(end - begin) // 4
                            if info["dtype"] in ("F32", "I32") else (end - begin) // 8,
                            offset=8 + n + begin)
        tensors[name] = arr.reshape(info["shape"]).copy()
    return tensors, meta


# --- flowlib's counter-based randomness (backend/philox.h) -------------------
# MADE masks and Glow permutations are pure functions of saved seeds; these
# reproduce them bit for bit.

_M32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(seed, stream, index):
    """The four 32-bit words of Philox-4x32-10 at counters `index` (array)."""
    index = np.asarray(index, dtype=np.uint64)
    c0, c1 = index & _M32, index >> np.uint64(32)
    c2 = np.full_like(index, stream & 0xFFFFFFFF)
    c3 = np.full_like(index, stream >> 32)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _M32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _M32)
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & _M32, (k1 + np.uint64(0xBB67AE85)) & _M32
    return c0, c1, c2, c3


def random_permutation(n, seed, stream):
    """flowlib's Fisher-Yates (model/spec.cpp), uniforms rounded as in float."""
    bits = philox4x32_10(seed, stream, np.arange(n + 1))[0]
    p = list(range(n))
    for j in range(n, 1, -1):
        u = np.float32(bits[j] >> np.uint64(8)) * np.float32(1.0 / 16777216.0)
        k = min(int(u * np.float32(j)), j - 1)
        p[j - 1], p[k] = p[k], p[j - 1]
    return p


def made_masks(order, hidden, mask_seed, blocks=2):
    """MADE's 0/1 masks [out, in] per layer (nn/made.cpp: made_masks)."""
    dim = len(order)
    in_degree = np.empty(dim, dtype=np.int64)
    in_degree[np.asarray(order)] = np.arange(1, dim + 1)
    masks, prev = [], in_degree
    for layer, width in enumerate(hidden):
        lo = int(prev.min())
        hi = max(lo, dim - 1)
        bits = philox4x32_10(mask_seed, 0x6D61646500000000 + layer, np.arange(width))[0]
        degree = lo + (bits % np.uint64(hi - lo + 1)).astype(np.int64)
        masks.append(degree[:, None] >= prev[None, :])
        prev = degree
    masks.append(np.tile(in_degree[:, None] > prev[None, :], (blocks, 1)))
    return [torch.from_numpy(m.astype(np.float32)) for m in masks]


# --- layers -----------------------------------------------------------------
# Every layer has forward(x) -> (z, logdet or None) (data -> latent) and
# inverse(z) -> (x, logdet or None). Fixed masks and index tensors are
# non-persistent buffers, so state_dict() holds exactly what flowlib saves.

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus,
               "leaky_relu": nn.LeakyReLU}


class MLP(nn.Module):
    """Linear layers widths[0] -> ... -> widths[-1] with an activation
    between them, the last starting at zero (an identity flow), named 0, 1,
    ... as flowlib's "net" / "made" parameters. With `masks` (MADE) each
    weight is multiplied by a fixed 0/1 mask, as in nflows and zuko. With
    `context_dim` (a conditional MADE) a context enters the first hidden
    layer and the outputs through unmasked maps of their own."""

    def __init__(self, widths, activation="relu", masks=None, context_dim=0):
        super().__init__()
        self.linears = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
        for k, layer in enumerate(self.linears):
            self.add_module(str(k), layer)
        nn.init.zeros_(self.linears[-1].weight)
        nn.init.zeros_(self.linears[-1].bias)
        if context_dim:
            self.context = nn.Linear(context_dim, widths[1], bias=False)
            self.context_out = nn.Linear(context_dim, widths[-1], bias=False)
            nn.init.zeros_(self.context_out.weight)
        self.act = ACTIVATIONS[activation]()
        self.masked = masks is not None
        for k, mask in enumerate(masks or []):
            self.register_buffer("mask%d" % k, mask, persistent=False)

    def weights(self):
        """(weight, bias) per layer, masks applied: computed once per call
        and reused by every pass of a D-pass MADE solve."""
        return [(layer.weight * getattr(self, "mask%d" % k) if self.masked else layer.weight,
                 layer.bias) for k, layer in enumerate(self.linears)]

    def forward(self, h, weights=None, ctx=None):
        weights = weights or self.weights()
        for k, (w, b) in enumerate(weights):
            h = F.linear(h, w, b)
            if ctx is not None and k == 0:
                h = h + self.context(ctx)
            if k + 1 < len(weights):
                h = self.act(h)
        return h if ctx is None else h + self.context_out(ctx)


def make_mask(t, dim):
    mask = t.get("mask", "alternate")
    parity = t.get("parity", 0)
    if isinstance(mask, list):
        m = [float(v) for v in mask]
    elif mask in ("alternate", "half"):
        m = [1.0 if ((j % 2 == 0) if mask == "alternate" else (j < dim // 2)) != (parity == 1)
             else 0.0 for j in range(dim)]
    else:
        raise ValueError("mask %r: use the expanded spec" % (mask,))
    return torch.tensor(m)


class Coupling(nn.Module):
    conditional = True

    def __init__(self, dim, hidden, affine, mask, activation="relu", context_dim=0):
        super().__init__()
        self.affine = affine
        self.net = MLP([dim + context_dim] + list(hidden) + [2 * dim if affine else dim],
                       activation)
        self.register_buffer("mask", mask, persistent=False)
        self.register_buffer("free", 1.0 - mask, persistent=False)
        if affine:
            self.scale = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def _s_t(self, h):
        raw, t = h[:, :self.dim], h[:, self.dim:]
        return self.free * self.scale * torch.tanh(raw), t

    def _net(self, x, ctx):
        h = x * self.mask
        return self.net(h if ctx is None else torch.cat([h, ctx], 1))

    def forward(self, x, ctx=None):
        h = self._net(x, ctx)
        if not self.affine:
            return x + self.free * h, None
        s, t = self._s_t(h)
        return self.mask * x + self.free * (x * torch.exp(s) + t), s.sum(1)

    def inverse(self, z, ctx=None):
        h = self._net(z, ctx)
        if not self.affine:
            return z - self.free * h, None
        s, t = self._s_t(h)
        return self.mask * z + self.free * (z - t) * torch.exp(-s), -s.sum(1)


class MadeAffine(nn.Module):
    """A Gaussian autoregressive layer on a MADE (flows/made.h):
    maf: forward z = (x - mu(x)) exp(-alpha(x)) in one pass, inverse by D
    passes; iaf: forward by D passes, inverse in one pass."""

    conditional = True

    def __init__(self, dim, hidden, order, mask_seed, iaf=False, activation="relu",
                 context_dim=0):
        super().__init__()
        self.made = MLP([dim] + list(hidden) + [2 * dim], activation,
                        made_masks(order, hidden, mask_seed), context_dim)
        self.dim, self.iaf = dim, iaf

    def _affine(self, u, weights=None, ctx=None):
        h = self.made(u, weights, ctx)
        return h[:, :self.dim], h[:, self.dim:]

    def _one_pass(self, y, ctx):
        """(y - mu(y)) exp(-alpha(y)), logdet -sum alpha."""
        mu, alpha = self._affine(y, ctx=ctx)
        return (y - mu) * torch.exp(-alpha), -alpha.sum(1)

    def _d_passes(self, y, ctx):
        """out solving out = y exp(alpha(out)) + mu(out), logdet +sum alpha:
        as nflows / zuko, D full MADE passes, pass k making dimension k of the
        order exact (the weights masked once for all passes). Differentiable:
        IAF training backpropagates through it."""
        weights = self.made.weights()
        out = torch.zeros_like(y)
        for _ in range(self.dim):
            mu, alpha = self._affine(out, weights, ctx)
            out = y * torch.exp(alpha) + mu
        # alpha of the last pass saw every dimension but the last of the
        # order, which no output depends on: it is alpha(out).
        return out, alpha.sum(1)

    def forward(self, x, ctx=None):
        return self._d_passes(x, ctx) if self.iaf else self._one_pass(x, ctx)

    def inverse(self, z, ctx=None):
        return self._one_pass(z, ctx) if self.iaf else self._d_passes(z, ctx)


class ActNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.zeros(1))
        self._known = False  # the flag is known to be set: no tensor read per call

    def forward(self, x):
        if self.training and not self._known:
            if not self.initialized.item():
                self._data_init(x)
            self._known = True
        return (x + self.bias) * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    @torch.no_grad()
    def _data_init(self, x):
        """Glow's data-dependent init: zero mean, unit variance on this batch."""
        std = x.var(0, unbiased=False).sqrt() if x.shape[0] > 1 else torch.ones_like(x[0])
        self.bias.copy_(-x.mean(0))
        self.log_scale.copy_(-torch.log(std.clamp_min(1e-6)))
        self.initialized.fill_(1.0)

    def inverse(self, z):
        return z * torch.exp(-self.log_scale) - self.bias, (-self.log_scale.sum()).expand(z.shape[0])


class InvertibleLinear(nn.Module):
    """z = x W^T. LU: W = P L (U + diag(sign exp(log_s))) with W[i] = (L U)[perm[i]]
    and log|det W| = sum log_s; plain: W is the parameter "weight"."""

    def __init__(self, dim, lu=True, perm=None):
        super().__init__()
        q = torch.linalg.qr(torch.randn(dim, dim))[0]  # a random rotation, as Glow
        self.lu = lu
        if not lu:
            self.weight = nn.Parameter(q)
            return
        _, lower, upper = torch.linalg.lu(q)
        diag = upper.diagonal()
        self.lower = nn.Parameter(lower.tril(-1))
        self.upper = nn.Parameter(upper.triu(1))
        self.log_s = nn.Parameter(diag.abs().log())
        self.register_buffer("sign", torch.sign(diag))
        self.register_buffer("perm", torch.tensor(perm if perm is not None else range(dim)),
                             persistent=False)
        self.register_buffer("eye", torch.eye(dim), persistent=False)

    def weight_matrix(self):
        if not self.lu:
            return self.weight, torch.linalg.slogdet(self.weight)[1]
        lower = self.lower.tril(-1) + self.eye
        upper = self.upper.triu(1) + torch.diag(self.sign * torch.exp(self.log_s))
        return (lower @ upper)[self.perm], self.log_s.sum()

    def forward(self, x):
        w, logdet = self.weight_matrix()
        return F.linear(x, w), logdet.expand(x.shape[0])

    def inverse(self, z):
        w, logdet = self.weight_matrix()
        return F.linear(z, torch.inverse(w)), (-logdet).expand(z.shape[0])


class Planar(nn.Module):
    """z = x + u_hat tanh(w.x + b) (backend/glow_math.h); the inverse solves
    the scalar a = w.x + b by safeguarded Newton, in double, batched."""

    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.empty(dim).uniform_(-1.0, 1.0))
        self.u = nn.Parameter(torch.empty(dim).uniform_(-0.5, 0.5))
        self.b = nn.Parameter(torch.zeros(1))

    def _u_hat(self):
        # w.u_hat = -1 + softplus(w.u) > -1 keeps the map invertible.
        s, ww = self.w @ self.u, self.w @ self.w
        c = torch.where(ww > 0, (F.softplus(s) - 1.0 - s) / ww, torch.zeros_like(ww))
        u_hat = self.u + c * self.w
        return u_hat, self.w @ u_hat

    def forward(self, x):
        u_hat, psi = self._u_hat()
        t = torch.tanh(x @ self.w + self.b)
        return x + t[:, None] * u_hat, torch.log(1.0 + (1.0 - t * t) * psi)

    def inverse(self, z, tol=1e-10, iterations=200):
        u_hat, psi = self._u_hat()
        with torch.no_grad():
            # Root of a + psi tanh(a) = w.z + b, bracketed within |psi|; each
            # row stops once converged, as flowlib's per-row loop.
            c = (z @ self.w + self.b).double()
            p = psi.double()
            lo, hi, a = c - p.abs(), c + p.abs(), c.clone()
            active = torch.ones_like(c, dtype=torch.bool)
            for _ in range(iterations):
                t = torch.tanh(a)
                g = a + p * t - c
                hi = torch.where(g > 0, a, hi)
                lo = torch.where(g > 0, lo, a)
                slope = 1.0 + p * (1.0 - t * t)
                nxt = a - g / slope
                nxt = torch.where((slope > 0) & (nxt > lo) & (nxt < hi), nxt, 0.5 * (lo + hi))
                move = active & (g != 0)
                small = tol * (1.0 + nxt.abs())
                active = move & ((nxt - a).abs() > small) & (hi - lo > small)
                a = torch.where(move, nxt, a)
                if not bool(active.any()):
                    break
            t = torch.tanh(a).to(z.dtype)
        return z - t[:, None] * u_hat, -torch.log(1.0 + (1.0 - t * t) * psi)


class Radial(nn.Module):
    """z = x + beta / (alpha + r) (x - x0), r = |x - x0|; closed-form inverse."""

    def __init__(self, dim):
        super().__init__()
        self.x0 = nn.Parameter(torch.empty(dim).uniform_(-1.0, 1.0))
        self.alpha_raw = nn.Parameter(torch.zeros(1))
        self.beta_raw = nn.Parameter(torch.zeros(1))

    def _alpha_beta(self):
        alpha = F.softplus(self.alpha_raw)
        return alpha, -alpha + F.softplus(self.beta_raw)

    def _logdet(self, r, alpha, beta):
        h = 1.0 / (alpha + r)
        return (self.x0.shape[0] - 1) * torch.log1p(beta * h) + torch.log1p(alpha * beta * h * h)

    def forward(self, x):
        alpha, beta = self._alpha_beta()
        d = x - self.x0
        r = d.norm(dim=1)
        return x + (beta / (alpha + r))[:, None] * d, self._logdet(r, alpha, beta)

    def inverse(self, z):
        alpha, beta = self._alpha_beta()
        d = z - self.x0
        rz = d.norm(dim=1)
        # r^2 + B r - alpha rz = 0: the positive root, cancellation-free.
        big_b = alpha + beta - rz
        disc = torch.sqrt(big_b * big_b + 4.0 * alpha * rz)
        r = torch.where(big_b >= 0, 2.0 * alpha * rz / (big_b + disc), 0.5 * (disc - big_b))
        f = torch.where(rz > 0, r / rz.clamp_min(1e-30), torch.zeros_like(rz))
        return self.x0 + d * f[:, None], -self._logdet(r, alpha, beta)


class BatchNormFlow(nn.Module):
    def __init__(self, dim, momentum=0.1, eps=1e-5):
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.momentum, self.eps = momentum, eps

    def forward(self, x):
        if self.training:
            mean = x.mean(0)
            var = x.var(0, unbiased=False)
            with torch.no_grad():
                n = x.shape[0]
                unbiased = var * (n / (n - 1)) if n > 1 else var
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        z = (x - mean) * torch.rsqrt(var + self.eps) * torch.exp(self.log_gamma) + self.beta
        ld = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return z, ld.expand(x.shape[0])

    def inverse(self, z):
        mean, var = self.running_mean, self.running_var
        x = (z - self.beta) * torch.exp(-self.log_gamma) * torch.sqrt(var + self.eps) + mean
        ld = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return x, (-ld).expand(z.shape[0])


class DiagonalScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return x * torch.exp(self.log_scale), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z):
        return z * torch.exp(-self.log_scale), (-self.log_scale.sum()).expand(z.shape[0])


class Reverse(nn.Module):
    def forward(self, x):
        return x.flip(1), None

    def inverse(self, z):
        return z.flip(1), None


def _hidden(t):
    return t.get("hidden", [64, 64])


# One builder per transform type: (expanded spec entry, dim, context_dim) -> layer.
BUILDERS = {
    "affine_coupling": lambda t, dim, c: Coupling(dim, _hidden(t), True, make_mask(t, dim),
                                                  t.get("activation", "relu"), c),
    "additive_coupling": lambda t, dim, c: Coupling(dim, _hidden(t), False, make_mask(t, dim),
                                                    t.get("activation", "relu"), c),
    "batch_norm": lambda t, dim, c: BatchNormFlow(dim, t.get("momentum", 0.1),
                                                  t.get("eps", 1e-5)),
    "diagonal_scale": lambda t, dim, c: DiagonalScale(dim),
    "reverse": lambda t, dim, c: Reverse(),
    "made_affine": lambda t, dim, c: MadeAffine(dim, _hidden(t), t["order"], t["mask_seed"],
                                                t.get("direction", "maf") == "iaf",
                                                t.get("activation", "relu"), c),
    "actnorm": lambda t, dim, c: ActNorm(dim),
    "invertible_linear": lambda t, dim, c: InvertibleLinear(dim, t.get("lu", True),
                                                            t.get("perm")),
    "planar": lambda t, dim, c: Planar(dim),
    "radial": lambda t, dim, c: Radial(dim),
}


class MadeMixture(nn.Module):
    """The made_mog base (model/base_distribution.cpp): dimension d of z is a
    mixture of C Gaussians whose logits, means and log-scales are the MADE's
    outputs c D + d, (C + c) D + d and (2C + c) D + d. As flowlib, the MADE's
    last layer starts at zero but for the means' biases, uniform in [-1, 1]
    (flowlib draws them from its seed)."""

    def __init__(self, dim, components, hidden, order, mask_seed, activation="relu",
                 context_dim=0):
        super().__init__()
        self.made = MLP([dim] + list(hidden) + [3 * components * dim], activation,
                        made_masks(order, hidden, mask_seed, 3 * components), context_dim)
        with torch.no_grad():
            self.made.linears[-1].bias[components * dim:2 * components * dim].uniform_(-1, 1)
        self.dim, self.components, self.order = dim, components, list(order)

    def _mixture(self, h):
        """log weights, means, log-scales: [n, C, D] each."""
        h = h.view(h.shape[0], 3, self.components, self.dim)
        return torch.log_softmax(h[:, 0], dim=1), h[:, 1], h[:, 2]

    def log_prob(self, z, ctx=None):
        log_w, mean, log_scale = self._mixture(self.made(z, ctx=ctx))
        u = (z.unsqueeze(1) - mean) * torch.exp(-log_scale)
        terms = log_w - 0.5 * u * u - log_scale - 0.5 * LOG_TWO_PI
        return torch.logsumexp(terms, dim=1).sum(1)

    def sample(self, n, generator=None, ctx=None):
        """D MADE passes as nflows does, pass k drawing dimension order[k]."""
        weights = self.made.weights()
        z = torch.zeros(n, self.dim)
        rows = torch.arange(n)
        for d in self.order:
            log_w, mean, log_scale = self._mixture(self.made(z, weights, ctx))
            k = torch.multinomial(log_w[:, :, d].exp(), 1, generator=generator).squeeze(1)
            z[:, d] = mean[rows, k, d] + torch.exp(log_scale[rows, k, d]) * torch.randn(
                n, generator=generator)
        return z


class Flow(nn.Module):
    """Transforms named t0, t1, ... as in flowlib; forward = data -> latent."""

    def __init__(self, spec):
        super().__init__()
        dim = spec["dim"]
        self.dim, self.context_dim = dim, spec.get("context_dim", 0)
        base = spec.get("base", {"type": "normal"})
        self.base_type = base["type"]
        if self.base_type == "made_mog":
            if base.get("agnostic", "none") != "none" or base.get("ensemble", 1) != 1:
                raise ValueError("agnostic MADE MoG bases are not mirrored here")
            self.base = MadeMixture(dim, base["components"], _hidden(base), base["order"],
                                    base["mask_seed"], base.get("activation", "relu"),
                                    self.context_dim)
        elif self.base_type not in ("normal", "logistic"):
            raise ValueError("base %s is not mirrored here" % self.base_type)
        self.names = []
        for k, t in enumerate(spec["transforms"]):
            if t["type"] not in BUILDERS:
                raise ValueError("transform %s is not mirrored here" % t["type"])
            self.add_module("t%d" % k, BUILDERS[t["type"]](t, dim, self.context_dim))
            self.names.append("t%d" % k)

    def layers(self):
        return [getattr(self, n) for n in self.names]

    # Conditioners (couplings, MADEs) see the context; other layers do not.
    def forward(self, x, ctx=None):
        logdet = torch.zeros(x.shape[0], dtype=x.dtype)
        for layer in self.layers():
            x, ld = layer(x, ctx) if getattr(layer, "conditional", False) else layer(x)
            if ld is not None:
                logdet = logdet + ld
        return x, logdet

    def inverse(self, z, ctx=None):
        logdet = torch.zeros(z.shape[0], dtype=z.dtype)
        for layer in reversed(self.layers()):
            z, ld = (layer.inverse(z, ctx) if getattr(layer, "conditional", False)
                     else layer.inverse(z))
            if ld is not None:
                logdet = logdet + ld
        return z, logdet

    def base_log_prob(self, z, ctx=None):
        if self.base_type == "made_mog":
            return self.base.log_prob(z, ctx)
        if self.base_type == "normal":
            return -0.5 * (z * z + LOG_TWO_PI).sum(1)
        a = z.abs()
        return (-a - 2.0 * torch.log1p(torch.exp(-a))).sum(1)

    def base_sample(self, n, generator=None, ctx=None):
        if self.base_type == "made_mog":
            return self.base.sample(n, generator, ctx)
        if self.base_type == "normal":
            return torch.randn(n, self.dim, generator=generator)
        u = torch.rand(n, self.dim, generator=generator).clamp_(1e-7, 1 - 1e-7)
        return torch.log(u) - torch.log1p(-u)

    def log_prob(self, x, ctx=None):
        z, logdet = self(x, ctx)
        return self.base_log_prob(z, ctx) + logdet

    def sample(self, n, generator=None, ctx=None):
        x, _ = self.inverse(self.base_sample(n, generator, ctx), ctx)
        return x


MODELS = ("realnvp", "nice", "realnvp_bn", "maf", "iaf", "made", "glow", "planar", "radial")

# The equality check also covers each conditioner's conditional form:
# "<model>_ctx" is <model> with CHECK_CONTEXT_DIM context columns
# (flowlib_bench.cpp: check_outputs).
CHECK_CONTEXT_DIM = 3


def conditional_name(model):
    return model + "_ctx"

# Mixture components per dimension of the "made" model (MADE MoG), as
# flowlib_bench.cpp's kMadeComponents.
MADE_COMPONENTS = 10

# The MADE of a made_mog base takes its mask seed from flowlib's transform
# number past every real one (model/spec.cpp: base_index).
MADE_BASE_INDEX = 10001


def default_layers(model):
    """The issue's K: 5 MADE layers for maf / iaf, 8 layers otherwise (made:
    its one MADE)."""
    return 1 if model == "made" else 5 if model in ("maf", "iaf") else 8


def has_hidden(model):
    """Planar and radial layers have no conditioner network."""
    return model not in ("planar", "radial")


def context_of(model, context_dim):
    """The context_dim a benchmark gives `model`: planar and radial layers
    have no conditioner to read one (flowlib_bench.cpp: grid)."""
    return context_dim if has_hidden(model) else 0


def dense_weights(model, dim, hidden, layers, context_dim=0):
    """Weights of the dense layers per model (flowlib_bench.cpp: dense_weights)."""
    if not has_hidden(model):
        return 0
    out = dim if model == "nice" else 3 * MADE_COMPONENTS * dim if model == "made" else 2 * dim
    # A coupling's net reads the context with its input; a MADE adds it to
    # its first hidden layer and to its outputs.
    context = context_dim * (hidden + (out if model in ("maf", "iaf", "made") else 0))
    return layers * (dim * hidden + hidden * hidden + hidden * out + context
                     + (dim * dim if model == "glow" else 0))


def preset_spec(model, dim, hidden, layers, seed=42, context_dim=0):
    """The expanded spec flowlib makes of flowlib_bench's model (model/spec.cpp:
    same orders, MADE mask seeds and permutations for model seed `seed`)."""
    spec = _preset_spec(model, dim, hidden, layers, seed)
    if context_dim:
        spec["context_dim"] = context_dim
    return spec


def _preset_spec(model, dim, hidden, layers, seed):
    h = [hidden, hidden]
    if model == "made":
        mask_seed = int(philox4x32_10(seed, 0x6D61646500000000 + MADE_BASE_INDEX, [0])[0][0])
        return {"dim": dim, "transforms": [],
                "base": {"type": "made_mog", "components": MADE_COMPONENTS,
                         "order": list(range(dim)), "mask_seed": mask_seed, "hidden": h}}
    transforms = []
    for k in range(layers):
        if model in ("maf", "iaf"):
            index = len(transforms)
            order = list(range(dim)) if k % 2 == 0 else list(range(dim - 1, -1, -1))
            mask_seed = int(philox4x32_10(seed, 0x6D61646500000000 + index, [0])[0][0])
            transforms.append({"type": "made_affine", "direction": model, "order": order,
                               "mask_seed": mask_seed, "hidden": h})
        elif model == "glow":
            perm = random_permutation(dim, seed, 0x7065726D00000000 + len(transforms) + 1)
            transforms += [{"type": "actnorm"},
                           {"type": "invertible_linear", "lu": True, "perm": perm},
                           {"type": "affine_coupling", "mask": "half", "parity": k % 2,
                            "hidden": h}]
        elif model in ("planar", "radial"):
            transforms.append({"type": model})
        else:
            transforms.append({"type": "additive_coupling" if model == "nice" else
                               "affine_coupling", "mask": "alternate", "parity": k % 2,
                               "hidden": h})
            if model == "realnvp_bn" and k + 1 < layers:
                transforms.append({"type": "batch_norm"})
    if model == "nice":
        transforms.append({"type": "diagonal_scale"})
    return {"dim": dim, "base": {"type": "logistic" if model == "nice" else "normal"},
            "transforms": transforms}


def load_flowlib(path):
    """A Flow with the spec, parameters and buffers of a flowlib model file."""
    tensors, meta = read_safetensors(path)
    flow = Flow(json.loads(meta["flowlib.spec"]))
    state = flow.state_dict()
    missing = [name for name in state if name not in tensors]
    if missing:
        raise KeyError("%s: no tensor %s" % (path, ", ".join(missing)))
    flow.load_state_dict({name: torch.from_numpy(tensors[name]) for name in state})
    return flow


def param_order(path, flow):
    """flow's trainable parameter names in flowlib's arena order (file offsets)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    params = dict(flow.named_parameters())
    return [k for k in sorted(header, key=lambda k: header[k]["data_offsets"][0]) if k in params]


# --- the equality check -----------------------------------------------------

def _load(base, name, shape=None):
    a = np.fromfile(base + "." + name + ".f32", dtype=np.float32)
    return a.reshape(shape) if shape else a


def check(directory, models=MODELS):
    """models: names of flowlib_bench --check's files (a model, or
    conditional_name(model) for its conditional form)."""
    ok = True
    torch.set_num_threads(1)
    for model in models:
        base = os.path.join(directory, model)
        flow = load_flowlib(base + ".safetensors")
        names = param_order(base + ".safetensors", flow)
        params = dict(flow.named_parameters())
        dim = flow.dim
        x = torch.from_numpy(_load(base, "x", (-1, dim)))
        c = (torch.from_numpy(_load(base, "context", (-1, flow.context_dim)))
             if flow.context_dim else None)
        results = []

        def compare(what, ours, theirs, tol):
            err = float(np.max(np.abs(ours - theirs)))
            scale = float(np.max(np.abs(theirs))) or 1.0
            rel = err / scale
            results.append((what, err, rel, rel <= tol))

        flow.eval()
        with torch.no_grad():
            compare("log_prob", flow.log_prob(x, c).numpy(), _load(base, "log_prob"), 1e-5)
            z, ld = flow(x, c)
            compare("forward z", z.numpy(), _load(base, "z", (-1, dim)), 1e-5)
            compare("forward logdet", ld.numpy(), _load(base, "logdet"), 1e-5)
            xi, ldi = flow.inverse(x, c)
            compare("inverse x", xi.numpy(), _load(base, "inverse", (-1, dim)), 1e-5)
            compare("inverse logdet", ldi.numpy(), _load(base, "inverse_logdet"), 1e-5)

        # flow_loss_grad: batch statistics, nothing changes (running stats saved).
        flow.train()
        saved = {k: v.clone() for k, v in flow.state_dict().items()}
        flow.zero_grad()
        loss = -flow.log_prob(x, c).mean()
        loss.backward()
        losses = _load(base, "loss")
        compare("loss", np.array([loss.item()]), losses[:1], 1e-5)
        grad = np.concatenate([params[n].grad.numpy().ravel() for n in names])
        compare("param grads", grad, _load(base, "grad"), 1e-4)
        flow.load_state_dict(saved)

        # One Adam step from the optimizer state saved in the file.
        tensors, meta = read_safetensors(base + ".safetensors")
        opt = torch.optim.Adam([params[n] for n in names], lr=1e-3)
        steps = int(meta["flowlib.optimizer_steps"])
        first, second = tensors["optimizer.first"], tensors["optimizer.second"]
        offset = 0
        for n in names:
            p = params[n]
            k = p.numel()
            opt.state[p] = {"step": torch.tensor(float(steps)),
                            "exp_avg": torch.from_numpy(first[offset:offset + k].reshape(p.shape).copy()),
                            "exp_avg_sq": torch.from_numpy(second[offset:offset + k].reshape(p.shape).copy())}
            offset += k
        opt.zero_grad()
        loss = -flow.log_prob(x, c).mean()
        loss.backward()
        opt.step()
        compare("train_step loss", np.array([loss.item()]), losses[1:2], 1e-5)
        after = np.concatenate([params[n].detach().numpy().ravel() for n in names])
        # Where the gradient is zero in exact arithmetic (a shift bias followed
        # by batch norm, whose batch mean removes it) both sides hold rounding
        # noise (~1e-9), which Adam's m / sqrt(v) turns into steps of up to lr
        # in either direction: those elements are left out.
        g = _load(base, "grad")
        real = np.abs(g) > 1e-5 * np.abs(g).max()
        compare("params after Adam step", after[real],
                _load(base, "params_after_step")[real], 1e-5)

        for what, err, rel, good in results:
            ok &= good
            print("%-11s %-24s max abs err %.3g (rel %.3g) %s"
                  % (model, what, err, rel, "ok" if good else "MISMATCH"))
    return ok


# --- benchmarking -----------------------------------------------------------

# Train steps cycle through this many batches, as flowlib_bench (kTrainBatches:
# one fixed batch is overfitted until the loss diverges).
TRAIN_BATCHES = 16


class TorchBench:
    """One configuration; run(op, calls) returns the seconds taken."""

    def __init__(self, model, dim, hidden, batch, threads, layers, context_dim=0):
        torch.set_num_threads(threads)
        torch.manual_seed(42)
        self.flow = Flow(preset_spec(model, dim, hidden, layers, context_dim=context_dim))
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=1e-3)
        self.first_state = copy.deepcopy(self.flow.state_dict())
        self.train = torch.from_numpy(bench_data(TRAIN_BATCHES * batch, dim)).view(
            TRAIN_BATCHES, batch, dim)
        self.x = self.train[0]
        # Each batch's context rows (None: an unconditional model).
        self.contexts = [None] * TRAIN_BATCHES
        if context_dim:
            self.contexts = list(torch.from_numpy(
                bench_context(TRAIN_BATCHES * batch, context_dim)).view(
                    TRAIN_BATCHES, batch, context_dim))
        self.steps = 0
        self.batch = batch
        self.gen = torch.Generator().manual_seed(1)

    def params(self):
        return sum(p.numel() for p in self.flow.parameters())

    def train_step(self):
        self.flow.train()
        self.opt.zero_grad(set_to_none=True)
        k = self.steps % TRAIN_BATCHES
        loss = -self.flow.log_prob(self.train[k], self.contexts[k]).mean()
        self.steps += 1
        if not torch.isfinite(loss):
            # As flowlib_bench does when its step fails: start again from the
            # first parameters and a fresh optimizer rather than time steps
            # on NaNs.
            self.flow.load_state_dict(self.first_state)
            self.opt = torch.optim.Adam(self.flow.parameters(), lr=1e-3)
            return loss
        loss.backward()
        self.opt.step()
        return loss

    def log_prob(self):
        self.flow.eval()
        with torch.inference_mode():
            return self.flow.log_prob(self.x, self.contexts[0])

    def sample(self):
        self.flow.eval()
        with torch.inference_mode():
            return self.flow.sample(self.batch, self.gen, self.contexts[0])

    def run(self, op, calls):
        fn = getattr(self, op)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="DIR", help="compare with flowlib_bench --check DIR")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="models to check (<model>_ctx: its conditional form)")
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check(args.check, args.models.split(",")) else 1)
    ap.print_help()


if __name__ == "__main__":
    main()
