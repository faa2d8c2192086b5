#!/usr/bin/python3
"""PyTorch versions of flowlib's models, for checking and for speed comparisons.

The architectures are flowlib's own (see README "Model specs"):

  affine_coupling    z = m x + (1-m) (x exp(s) + t),  s = (1-m) scale tanh(raw),
                     [raw, t] = MLP(m x); logdet += sum s
  additive_coupling  z = x + (1-m) t,  t = MLP(m x)
  diagonal_scale     z = x exp(s), logdet += sum s
  batch_norm         batch statistics (biased variance) in training, running
                     averages (unbiased batch variance, momentum 0.1) otherwise
  base               standard normal (realnvp) or standard logistic (nice)

MLPs are Linear -> ReLU -> Linear -> ReLU -> Linear with torch.nn.Linear's
default initialization, U(-1/sqrt(in), 1/sqrt(in)) for weights and biases, as
flowlib; the last layer starts at zero. Parameter names are flowlib's
("t0.net.0.weight", "t0.scale", "t1.log_gamma", ...), so a flowlib
safetensors file loads with load_flowlib() (a small reader: the safetensors
package is not needed). The optimizer is torch.optim.Adam(lr=1e-3), flowlib's
default.

  /usr/bin/python3 bench/torch_reference.py --check DIR
      compares with what `flowlib_bench --check DIR` wrote (same weights in
      both: log_prob, forward, inverse, loss gradients, one Adam step).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

LOG_TWO_PI = math.log(2.0 * math.pi)


# --- data (flowlib_bench.cpp: bench_data) ----------------------------------

def _splitmix64(x):
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def bench_data(rows, dim):
    k = np.arange(rows * dim, dtype=np.uint64)
    two = np.uint64(2)
    u1 = ((_splitmix64(two * k) >> np.uint64(40)).astype(np.float64) + 0.5) / 16777216.0
    u2 = ((_splitmix64(two * k + np.uint64(1)) >> np.uint64(40)).astype(np.float64) + 0.5) / 16777216.0
    x = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return x.astype(np.float32).reshape(rows, dim)


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


# --- layers -----------------------------------------------------------------

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus,
               "leaky_relu": nn.LeakyReLU}


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
    def __init__(self, dim, hidden, affine, mask, activation="relu"):
        super().__init__()
        self.affine = affine
        linears, width = [], dim
        for h in hidden:
            linears.append(nn.Linear(width, h))
            width = h
        last = nn.Linear(width, 2 * dim if affine else dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        linears.append(last)
        # Named like flowlib's parameters: net.0, net.1, net.2 are the Linears.
        self.net = nn.ModuleList(linears)
        self.act = ACTIVATIONS[activation]()
        self.register_buffer("mask", mask)
        self.register_buffer("free", 1.0 - mask)
        if affine:
            self.scale = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def _h(self, x):
        h = x * self.mask
        for linear in self.net[:-1]:
            h = self.act(linear(h))
        return self.net[-1](h)

    def _s_t(self, h):
        raw, t = h[:, :self.dim], h[:, self.dim:]
        return self.free * self.scale * torch.tanh(raw), t

    def forward(self, x):
        h = self._h(x)
        if not self.affine:
            return x + self.free * h, None
        s, t = self._s_t(h)
        return self.mask * x + self.free * (x * torch.exp(s) + t), s.sum(1)

    def inverse(self, z):
        h = self._h(z)
        if not self.affine:
            return z - self.free * h, None
        s, t = self._s_t(h)
        return self.mask * z + self.free * (z - t) * torch.exp(-s), -s.sum(1)


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


class Flow(nn.Module):
    """Transforms named t0, t1, ... as in flowlib; forward = data -> latent."""

    def __init__(self, spec):
        super().__init__()
        dim = spec["dim"]
        if spec.get("context_dim", 0):
            raise ValueError("conditional models are not mirrored here")
        self.dim = dim
        self.base = spec.get("base", {"type": "normal"})["type"]
        self.names = []
        for k, t in enumerate(spec["transforms"]):
            kind = t["type"]
            if kind in ("affine_coupling", "additive_coupling"):
                layer = Coupling(dim, t.get("hidden", [64, 64]), kind == "affine_coupling",
                                 make_mask(t, dim), t.get("activation", "relu"))
            elif kind == "batch_norm":
                layer = BatchNormFlow(dim, t.get("momentum", 0.1), t.get("eps", 1e-5))
            elif kind == "diagonal_scale":
                layer = DiagonalScale(dim)
            elif kind == "reverse":
                layer = Reverse()
            else:
                raise ValueError("transform %s is not mirrored here" % kind)
            self.add_module("t%d" % k, layer)
            self.names.append("t%d" % k)

    def layers(self):
        return [getattr(self, n) for n in self.names]

    def forward(self, x):
        logdet = torch.zeros(x.shape[0], dtype=x.dtype)
        for layer in self.layers():
            x, ld = layer(x)
            if ld is not None:
                logdet = logdet + ld
        return x, logdet

    def inverse(self, z):
        logdet = torch.zeros(z.shape[0], dtype=z.dtype)
        for layer in reversed(self.layers()):
            z, ld = layer.inverse(z)
            if ld is not None:
                logdet = logdet + ld
        return z, logdet

    def base_log_prob(self, z):
        if self.base == "normal":
            return -0.5 * (z * z + LOG_TWO_PI).sum(1)
        a = z.abs()
        return (-a - 2.0 * torch.log1p(torch.exp(-a))).sum(1)

    def base_sample(self, n, generator=None):
        if self.base == "normal":
            return torch.randn(n, self.dim, generator=generator)
        u = torch.rand(n, self.dim, generator=generator).clamp_(1e-7, 1 - 1e-7)
        return torch.log(u) - torch.log1p(-u)

    def log_prob(self, x):
        z, logdet = self(x)
        return self.base_log_prob(z) + logdet

    def sample(self, n, generator=None):
        x, _ = self.inverse(self.base_sample(n, generator))
        return x


def preset_spec(model, dim, hidden, layers):
    """The expanded spec of flowlib_bench's models (realnvp, nice, realnvp_bn)."""
    affine = model != "nice"
    transforms = []
    for k in range(layers):
        transforms.append({"type": "affine_coupling" if affine else "additive_coupling",
                           "mask": "alternate", "parity": k % 2, "hidden": [hidden, hidden]})
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
    for name in state:
        if name.endswith(".mask") or name.endswith(".free"):
            continue
        if name not in tensors:
            raise KeyError("%s: no tensor %s" % (path, name))
        state[name] = torch.from_numpy(tensors[name])
    flow.load_state_dict(state)
    return flow


def param_order(path):
    """Trainable parameter names in flowlib's arena order (file offsets)."""
    tensors, meta = read_safetensors(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    names = [k for k in sorted(header, key=lambda k: header[k]["data_offsets"][0])
             if not k.startswith("optimizer.") and not k.endswith("running_mean")
             and not k.endswith("running_var")]
    return names


# --- the equality check -----------------------------------------------------

def _load(base, name, shape=None):
    a = np.fromfile(base + "." + name + ".f32", dtype=np.float32)
    return a.reshape(shape) if shape else a


def check(directory, models=("realnvp", "nice", "realnvp_bn")):
    ok = True
    torch.set_num_threads(1)
    for model in models:
        base = os.path.join(directory, model)
        flow = load_flowlib(base + ".safetensors")
        names = param_order(base + ".safetensors")
        params = dict(flow.named_parameters())
        dim = flow.dim
        x = torch.from_numpy(_load(base, "x", (-1, dim)))
        results = []

        def compare(what, ours, theirs, tol):
            err = float(np.max(np.abs(ours - theirs)))
            scale = float(np.max(np.abs(theirs))) or 1.0
            rel = err / scale
            results.append((what, err, rel, rel <= tol))

        flow.eval()
        with torch.no_grad():
            compare("log_prob", flow.log_prob(x).numpy(), _load(base, "log_prob"), 1e-5)
            z, ld = flow(x)
            compare("forward z", z.numpy(), _load(base, "z", (-1, dim)), 1e-5)
            compare("forward logdet", ld.numpy(), _load(base, "logdet"), 1e-5)
            xi, ldi = flow.inverse(x)
            compare("inverse x", xi.numpy(), _load(base, "inverse", (-1, dim)), 1e-5)
            compare("inverse logdet", ldi.numpy(), _load(base, "inverse_logdet"), 1e-5)

        # flow_loss_grad: batch statistics, nothing changes (running stats saved).
        flow.train()
        saved = {k: v.clone() for k, v in flow.state_dict().items()}
        flow.zero_grad()
        loss = -flow.log_prob(x).mean()
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
        loss = -flow.log_prob(x).mean()
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

class TorchBench:
    """One configuration; run(op, calls) returns the seconds taken."""

    def __init__(self, model, dim, hidden, batch, threads, layers):
        torch.set_num_threads(threads)
        torch.manual_seed(42)
        self.flow = Flow(preset_spec(model, dim, hidden, layers))
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=1e-3)
        self.x = torch.from_numpy(bench_data(batch, dim))
        self.batch = batch
        self.gen = torch.Generator().manual_seed(1)

    def params(self):
        return sum(p.numel() for p in self.flow.parameters())

    def train_step(self):
        self.flow.train()
        self.opt.zero_grad(set_to_none=True)
        loss = -self.flow.log_prob(self.x).mean()
        loss.backward()
        self.opt.step()
        return loss

    def log_prob(self):
        self.flow.eval()
        with torch.inference_mode():
            return self.flow.log_prob(self.x)

    def sample(self):
        self.flow.eval()
        with torch.inference_mode():
            return self.flow.sample(self.batch, self.gen)

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
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check(args.check) else 1)
    ap.print_help()


if __name__ == "__main__":
    main()
