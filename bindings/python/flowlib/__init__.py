"""flowlib: normalizing flows from Python.

    import flowlib

    x = flowlib.toy_data("two_moons", 4096, seed=0)
    with flowlib.Flow.preset("realnvp", dim=2, layers=6, hidden=[32, 32]) as flow:
        flow.fit(x, epochs=20, batch_size=256)
        print(flow.log_prob(x[:5]))
        samples = flow.sample(1000, seed=1)
        flow.save("moons.safetensors")

Arrays are numpy float32, row-major, batch first: x has shape (n, dim) (or
(n, C, H, W) and so on, as long as the trailing sizes multiply to dim).
float32 C-contiguous arrays go to the library without a copy; anything else
is converted first. A Flow is used by one thread at a time (`clone()` gives
each thread its own); the GIL is released while the library computes, so
threads with their own flows run in parallel.

Every failure raises a subclass of FlowError whose message is the library's
own (flow_last_error). The 1:1 C functions, returning status codes instead of
raising, are in `flowlib.capi` (unchecked: array sizes are your job there).
"""

import json
import random
import sys
import time

import numpy as np

from . import capi as _c

__all__ = [
    "Flow", "toy_data", "device_available", "set_num_threads", "version",
    "FlowError", "InvalidArgumentError", "SpecError", "FlowIOError",
    "FormatError", "OutOfMemoryError", "DeviceError", "UnsupportedError",
    "NumericError", "BufferTooSmallError", "InternalError",
]

__version__ = _c.flow_version_string()


# --------------------------------------------------------------------------
# Errors: one class per flow_status, all under FlowError. Where a builtin
# exception means the same thing it is a second base, so `except ValueError`
# and `except OSError` keep working.
# --------------------------------------------------------------------------

class FlowError(Exception):
    """Base class of every flowlib error. `status` is the flow_status code."""
    status = None


class InvalidArgumentError(FlowError, ValueError):
    """Bad argument: wrong shape, non-finite data, n = 0, ..."""
    status = _c.FLOW_ERR_INVALID_ARGUMENT


class SpecError(FlowError, ValueError):
    """The model or optimizer spec is wrong (the message names the field)."""
    status = _c.FLOW_ERR_SPEC


class FlowIOError(FlowError, OSError):
    """A file could not be read or written."""
    status = _c.FLOW_ERR_IO


class FormatError(FlowError, ValueError):
    """A model file or buffer is malformed."""
    status = _c.FLOW_ERR_FORMAT


class OutOfMemoryError(FlowError, MemoryError):
    status = _c.FLOW_ERR_OUT_OF_MEMORY


class DeviceError(FlowError):
    """The device failed or is absent."""
    status = _c.FLOW_ERR_DEVICE


class UnsupportedError(FlowError, NotImplementedError):
    """A valid request this build cannot do."""
    status = _c.FLOW_ERR_UNSUPPORTED


class NumericError(FlowError, ArithmeticError):
    """A result was not finite (a train step is then skipped, model unchanged)."""
    status = _c.FLOW_ERR_NUMERIC


class BufferTooSmallError(FlowError):
    status = _c.FLOW_ERR_BUFFER_TOO_SMALL


class InternalError(FlowError):
    status = _c.FLOW_ERR_INTERNAL


_ERRORS = {cls.status: cls for cls in (
    InvalidArgumentError, SpecError, FlowIOError, FormatError, OutOfMemoryError,
    DeviceError, UnsupportedError, NumericError, BufferTooSmallError, InternalError)}


def _raise(status):
    # flow_last_error is per thread and only failing calls change it, so it
    # still holds this call's message (the GIL was released, not the thread).
    cls = _ERRORS.get(status, FlowError)
    err = cls(_c.flow_last_error() or _c.flow_status_string(status))
    err.status = status
    raise err


def _check(status):
    if status:
        _raise(status)


def _device(device):
    if isinstance(device, str):
        try:
            return {"cpu": _c.FLOW_DEVICE_CPU, "cuda": _c.FLOW_DEVICE_CUDA}[device.lower()]
        except KeyError:
            raise InvalidArgumentError(f"unknown device {device!r} (use 'cpu' or 'cuda')") from None
    return int(device)


_DEVICE_NAMES = {_c.FLOW_DEVICE_CPU: "cpu", _c.FLOW_DEVICE_CUDA: "cuda"}


def _float32(a, name):
    # No copy when a is already a C-contiguous float32 array.
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim == 0:
        raise InvalidArgumentError(f"{name} must be an array, got a scalar")
    return a


def _rows(a, name, width, n=None):
    """a as C-contiguous float32 with shape (n, ...) where ... holds width values."""
    a = _float32(a, name)
    rows = a.shape[0] if a.ndim >= 2 else -1
    if rows < 1 or a.size != rows * width or (n is not None and rows != n):
        want = f"({'n' if n is None else n}, {width})"
        raise InvalidArgumentError(f"{name} must have shape {want} with n >= 1, got {a.shape}")
    return a


# --------------------------------------------------------------------------
# Module functions
# --------------------------------------------------------------------------

def version():
    """The version of the loaded libflowlib, e.g. '0.1.0'."""
    return _c.flow_version_string()


def device_available(device):
    """True if models can be created on device ('cpu' or 'cuda')."""
    return bool(_c.flow_device_available(_device(device)))


def set_num_threads(n):
    """Threads the CPU backend uses, for every model; 0 = all cores."""
    _check(_c.flow_set_num_threads(int(n)))


def toy_data(name, n, seed=0):
    """n rows of a 2-D toy data set ('two_moons', 'eight_gaussians'), shape (n, 2)."""
    out = np.empty((int(n), 2), dtype=np.float32)
    _check(_c.flow_toy_data(name, int(n), int(seed), out))
    return out


# --------------------------------------------------------------------------
# Flow
# --------------------------------------------------------------------------

class Flow:
    """A normalizing flow model (one flow_model handle).

    Flow(spec, seed=0, device="cpu") takes a spec as a dict or a JSON string;
    Flow.preset("realnvp", dim=2, layers=4, hidden=[32, 32]) builds one from a
    preset; Flow.load(path) / Flow.from_bytes(data) read a saved model.
    Use it as a context manager, or call close(), to free it at a known time.
    """

    def __init__(self, spec, *, seed=0, device="cpu"):
        if not isinstance(spec, str):
            spec = json.dumps(spec)
        status, handle = _c.flow_model_create(spec, _device(device), int(seed))
        _check(status)
        self._adopt(handle)

    def _adopt(self, handle):
        self._m = handle
        # Immutable for a model's life: read once, keeps the checks per call cheap.
        self._dim = _c.flow_model_dim(handle)
        self._context_dim = _c.flow_model_context_dim(handle)
        return self

    @classmethod
    def _from_handle(cls, status, handle):
        _check(status)
        return cls.__new__(cls)._adopt(handle)

    @classmethod
    def preset(cls, name, dim, *, seed=0, device="cpu", **options):
        """A model from a preset: Flow.preset('realnvp', dim=2, layers=8, hidden=[64, 64])."""
        return cls({"preset": name, "dim": dim, **options}, seed=seed, device=device)

    @classmethod
    def load(cls, path, *, device="cpu"):
        """Loads a model saved by save() (any language's binding, or C)."""
        return cls._from_handle(*_c.flow_model_load(str(path), _device(device)))

    @classmethod
    def from_bytes(cls, data, *, device="cpu"):
        """Loads a model from the bytes to_bytes() returned."""
        data = memoryview(data)
        return cls._from_handle(*_c.flow_model_load_buffer(data, data.nbytes, _device(device)))

    # -- lifetime ----------------------------------------------------------

    def close(self):
        """Frees the model now; further calls raise InvalidArgumentError."""
        m, self._m = getattr(self, "_m", None), None
        if m is not None:
            _c.flow_model_free(m)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: capi may already be gone
            pass

    @property
    def _handle(self):
        if self._m is None:
            raise InvalidArgumentError("this Flow is closed")
        return self._m

    def __repr__(self):
        if self._m is None:
            return "<flowlib.Flow (closed)>"
        return (f"<flowlib.Flow dim={self._dim} context_dim={self._context_dim} "
                f"params={self.num_params} device={self.device!r}>")

    def clone(self, device=None):
        """An independent deep copy (weights, statistics, optimizer state)."""
        dev = self.device if device is None else device
        return Flow._from_handle(*_c.flow_model_clone(self._handle, _device(dev)))

    # -- properties --------------------------------------------------------

    @property
    def dim(self):
        return self._dim

    @property
    def context_dim(self):
        return self._context_dim

    @property
    def num_params(self):
        return _c.flow_model_param_count(self._handle)

    @property
    def device(self):
        return _DEVICE_NAMES.get(_c.flow_model_device(self._handle), "unknown")

    @property
    def step_count(self):
        """Successful train steps taken (saved with the model)."""
        return _c.flow_model_step_count(self._handle)

    @property
    def spec_json(self):
        """The expanded, explicit spec as a JSON string."""
        status, size = _c.flow_model_spec(self._handle, None, 0)
        if status not in (_c.FLOW_OK, _c.FLOW_ERR_BUFFER_TOO_SMALL):
            _raise(status)
        buf = bytearray(size + 1)
        _check(_c.flow_model_spec(self._handle, buf, len(buf))[0])
        return buf[:size].decode("utf-8")

    @property
    def spec(self):
        """The expanded spec as a dict: Flow(flow.spec) rebuilds the same model."""
        return json.loads(self.spec_json)

    @property
    def params(self):
        """A copy of all trainable parameters, float32, in the model's fixed order."""
        out = np.empty(self.num_params, dtype=np.float32)
        _check(_c.flow_model_get_params(self._handle, out, out.size))
        return out

    @params.setter
    def params(self, values):
        values = _float32(values, "params").reshape(-1)
        if values.size != self.num_params:
            raise InvalidArgumentError(f"params must have {self.num_params} values, got {values.size}")
        _check(_c.flow_model_set_params(self._handle, values, values.size))

    # -- densities, sampling, transforms -----------------------------------

    def _context(self, context, n):
        if context is None:
            return None
        if self._context_dim == 0:
            raise InvalidArgumentError("this model takes no context (context_dim is 0)")
        return _rows(context, "context", self._context_dim, n)

    def log_prob(self, x, context=None):
        """log p(x | context) in nats for each row of x; shape (n,)."""
        x = _rows(x, "x", self._dim)
        n = x.shape[0]
        out = np.empty(n, dtype=np.float32)
        _check(_c.flow_log_prob(self._handle, x, self._context(context, n), n, out))
        return out

    def sample(self, n, context=None, temperature=1.0, seed=None, *, return_log_prob=False):
        """n samples, shape (n, dim). The same seed gives the same samples;
        seed=None draws a fresh one. With return_log_prob, also log p of each."""
        n = int(n)
        if n < 1:
            raise InvalidArgumentError(f"n must be >= 1, got {n}")
        if seed is None:
            seed = random.getrandbits(64)
        out = np.empty((n, self._dim), dtype=np.float32)
        lp = np.empty(n, dtype=np.float32) if return_log_prob else None
        _check(_c.flow_sample(self._handle, n, self._context(context, n), float(temperature),
                              int(seed), out, lp))
        return (out, lp) if return_log_prob else out

    def _transform(self, fn, a, name, context):
        a = _rows(a, name, self._dim)
        n = a.shape[0]
        out = np.empty_like(a)
        logdet = np.empty(n, dtype=np.float32)
        _check(fn(self._handle, a, self._context(context, n), n, out, logdet))
        return out, logdet

    def forward(self, x, context=None):
        """z = forward(x) (data -> latent) and log|det dz/dx| per row."""
        return self._transform(_c.flow_forward, x, "x", context)

    def inverse(self, z, context=None):
        """x = inverse(z) (latent -> data) and log|det dx/dz| per row."""
        return self._transform(_c.flow_inverse, z, "z", context)

    # -- training ----------------------------------------------------------

    def set_optimizer(self, spec=None, **fields):
        """set_optimizer(type='adam', lr=1e-3, ...) or set_optimizer({...}); resets its state."""
        spec = dict(spec or {}, **fields)
        _check(_c.flow_model_set_optimizer(self._handle, json.dumps(spec)))

    def train_step(self, x, context=None):
        """One optimizer step on the batch's mean negative log-likelihood; returns it."""
        x = _rows(x, "x", self._dim)
        n = x.shape[0]
        loss = np.empty(1, dtype=np.float32)
        _check(_c.flow_train_step(self._handle, x, self._context(context, n), n, loss))
        return float(loss[0])

    def loss_grad(self, x, context=None):
        """(loss, parameter gradient, x gradient) without changing the model."""
        x = _rows(x, "x", self._dim)
        n = x.shape[0]
        loss = np.empty(1, dtype=np.float32)
        pgrad = np.empty(self.num_params, dtype=np.float32)
        xgrad = np.empty_like(x)
        _check(_c.flow_loss_grad(self._handle, x, self._context(context, n), n, loss, pgrad, xgrad))
        return float(loss[0]), pgrad, xgrad

    def fit(self, data, epochs=1, batch_size=256, *, context=None, shuffle=True,
            seed=0, progress=None, callback=None):
        """Trains on data for some epochs of mini-batches; returns the mean loss
        of each epoch. Incomplete last batches are dropped (batch statistics
        need rows), unless data has fewer rows than one batch. progress: show a
        progress line on stderr (default: when stderr is a terminal).
        callback(epoch, mean_loss) runs after each epoch; returning False stops."""
        x = _rows(data, "data", self._dim)
        ctx = self._context(context, x.shape[0])
        n = x.shape[0]
        batch_size = max(1, min(int(batch_size), n))
        steps = n // batch_size
        rng = np.random.default_rng(seed)
        bar = _Progress(epochs, steps) if (sys.stderr.isatty() if progress is None else progress) else None
        history = []
        for epoch in range(int(epochs)):
            order = rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for step in range(steps):
                idx = order[step * batch_size:(step + 1) * batch_size]
                loss = self.train_step(x[idx], None if ctx is None else ctx[idx])
                total += loss
                if bar:
                    bar.update(epoch, step + 1, total / (step + 1))
            history.append(total / steps)
            if bar:
                bar.end_epoch(epoch, history[-1])
            if callback is not None and callback(epoch, history[-1]) is False:
                break
        return history

    # -- saving ------------------------------------------------------------

    def save(self, path):
        """Saves weights, statistics, spec and optimizer state (safetensors)."""
        _check(_c.flow_model_save(self._handle, str(path)))

    def to_bytes(self):
        """The bytes save() would write."""
        status, size = _c.flow_model_save_buffer(self._handle, None, 0)
        if status not in (_c.FLOW_OK, _c.FLOW_ERR_BUFFER_TOO_SMALL):
            _raise(status)
        buf = bytearray(size)
        _check(_c.flow_model_save_buffer(self._handle, buf, size)[0])
        return bytes(buf)


class _Progress:
    """One line per epoch on stderr, redrawn at most 10 times a second."""

    def __init__(self, epochs, steps):
        self.epochs, self.steps = epochs, steps
        self.start = self.last = time.monotonic()

    def _draw(self, epoch, step, loss, end=""):
        width = 24
        done = int(width * step / self.steps)
        rate = step / max(time.monotonic() - self.start, 1e-9)
        sys.stderr.write(f"\repoch {epoch + 1}/{self.epochs} [{'#' * done}{'.' * (width - done)}] "
                         f"{step}/{self.steps} loss {loss:.4f} {rate:.0f} steps/s{end}")
        sys.stderr.flush()

    def update(self, epoch, step, loss):
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self._draw(epoch, step, loss)

    def end_epoch(self, epoch, loss):
        self._draw(epoch, self.steps, loss, "\n")
        self.start = self.last = time.monotonic()
