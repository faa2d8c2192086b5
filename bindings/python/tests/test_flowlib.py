"""Tests of the Python binding (run by ctest as bindings_python)."""
import os
import threading

import numpy as np
import pytest

import flowlib
from flowlib import capi

SPEC = {"preset": "realnvp", "dim": 2, "layers": 4, "hidden": [16, 16]}


@pytest.fixture
def flow():
    with flowlib.Flow(SPEC, seed=3) as f:
        yield f


def moons(n, seed=0):
    return flowlib.toy_data("two_moons", n, seed=seed)


def test_version_and_devices():
    assert flowlib.__version__ == flowlib.version() == capi.FLOWLIB_VERSION_STRING
    assert flowlib.device_available("cpu")
    flowlib.set_num_threads(1)


def test_every_c_function_is_wrapped():
    import re
    header = open(os.path.join(os.path.dirname(__file__), "../../../include/flowlib.h")).read()
    names = set(re.findall(r"FLOW_API\s+[^;(]*?\b(flow_\w+)\s*\(", header))
    assert len(names) > 20
    assert sorted(n for n in names if not hasattr(capi, n)) == []


def test_train_a_few_steps(flow):
    x = moons(1024)
    losses = [flow.train_step(x[i * 128:(i + 1) * 128]) for i in range(8)]
    assert all(np.isfinite(losses))
    assert flow.step_count == 8
    history = flow.fit(x, epochs=2, batch_size=256, progress=False)
    assert len(history) == 2 and flow.step_count == 16
    lp = flow.log_prob(x)
    assert lp.shape == (1024,) and lp.dtype == np.float32 and np.isfinite(lp).all()


def test_constructors(flow):
    preset = flowlib.Flow.preset("realnvp", dim=2, layers=4, hidden=[16, 16], seed=3)
    from_json = flowlib.Flow('{"preset": "realnvp", "dim": 2, "layers": 4, "hidden": [16, 16]}', seed=3)
    from_spec = flowlib.Flow(flow.spec, seed=3)
    x = moons(16)
    for other in (preset, from_json, from_spec):
        assert other.num_params == flow.num_params
        np.testing.assert_array_equal(other.log_prob(x), flow.log_prob(x))
        other.close()
    assert flow.dim == 2 and flow.context_dim == 0 and flow.device == "cpu"
    assert "transforms" in flow.spec


def test_arrays_in_and_out(flow):
    x = moons(64)
    ref = flow.log_prob(x)
    # other dtypes, strides and Fortran order are converted, same answer
    np.testing.assert_array_equal(flow.log_prob(x.astype(np.float64)), ref)
    np.testing.assert_array_equal(flow.log_prob(np.asfortranarray(x)), ref)
    wide = np.zeros((64, 4), np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(flow.log_prob(wide[:, ::2]), ref)
    np.testing.assert_array_equal(flow.log_prob(x.tolist()), ref)
    z, ld = flow.forward(x)
    back, ld_inv = flow.inverse(z)
    np.testing.assert_allclose(back, x, atol=1e-4)
    np.testing.assert_allclose(ld, -ld_inv, atol=1e-4)
    loss, pgrad, xgrad = flow.loss_grad(x)
    assert pgrad.shape == (flow.num_params,) and xgrad.shape == x.shape and np.isfinite(loss)


def test_float32_input_is_not_copied(flow, monkeypatch):
    # capi receives the caller's own buffer when x is C-contiguous float32
    x = moons(8)
    seen = []
    real = capi.flow_log_prob

    def spy(m, xs, ctx, n, out):
        seen.append(xs)
        return real(m, xs, ctx, n, out)

    monkeypatch.setattr(capi, "flow_log_prob", spy)
    flow.log_prob(x)
    assert seen[0] is x


def test_sample_same_seed_same_output(flow):
    flow.train_step(moons(128))
    a = flow.sample(100, seed=42)
    b = flow.sample(100, seed=42)
    assert a.shape == (100, 2) and a.dtype == np.float32
    assert a.tobytes() == b.tobytes()
    assert flow.sample(100, seed=43).tobytes() != a.tobytes()
    s, lp = flow.sample(10, seed=1, temperature=0.5, return_log_prob=True)
    assert s.shape == (10, 2) and lp.shape == (10,)


def test_params_roundtrip(flow):
    p = flow.params
    p2 = p * 0.5
    flow.params = p2
    np.testing.assert_array_equal(flow.params, p2)
    with pytest.raises(flowlib.InvalidArgumentError, match=str(flow.num_params)):
        flow.params = p[:-1]


def test_save_load_file_and_bytes(flow, tmp_path):
    x = moons(256)
    flow.set_optimizer(type="adam", lr=2e-3)
    for _ in range(3):
        flow.train_step(x)
    path = tmp_path / "m.safetensors"
    flow.save(path)
    with flowlib.Flow.load(path) as g, flowlib.Flow.from_bytes(flow.to_bytes()) as h:
        assert flow.log_prob(x).tobytes() == g.log_prob(x).tobytes() == h.log_prob(x).tobytes()
        assert g.step_count == 3
        # the optimizer state came along: the next step agrees bit for bit
        assert flow.train_step(x) == g.train_step(x)
    c = flow.clone()
    assert c.log_prob(x).tobytes() == flow.log_prob(x).tobytes()


def test_reference_model_bit_for_bit(scratch):
    """libflowlib's own log-densities (written by the C reference program)."""
    data = np.fromfile(scratch / "data.f32", dtype="<f4").reshape(-1, 2)
    want = np.fromfile(scratch / "logprob_c.f32", dtype="<f4")
    with flowlib.Flow.load(scratch / "model_c.safetensors") as f:
        assert f.log_prob(data).tobytes() == want.tobytes()


def test_leave_model_for_other_languages(scratch):
    data = np.fromfile(scratch / "data.f32", dtype="<f4").reshape(-1, 2)
    with flowlib.Flow({**SPEC, "batch_norm": True}, seed=11) as f:
        for step in range(10):
            f.train_step(moons(128, seed=step))
        f.save(scratch / "model_python.safetensors")
        f.log_prob(data).tofile(scratch / "logprob_python.f32")


def test_errors():
    with pytest.raises(flowlib.SpecError, match="bogus"):
        flowlib.Flow({**SPEC, "bogus": 1})
    with pytest.raises(flowlib.SpecError):
        flowlib.Flow("{not json")
    with pytest.raises(flowlib.InvalidArgumentError):
        flowlib.toy_data("no_such_set", 10)
    assert issubclass(flowlib.SpecError, flowlib.FlowError)
    assert issubclass(flowlib.FlowIOError, OSError)


def test_error_wrong_shape(flow):
    for bad in (np.zeros((3, 3), np.float32), np.zeros(2, np.float32), np.zeros((0, 2), np.float32)):
        with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
            flow.log_prob(bad)
    with pytest.raises(flowlib.InvalidArgumentError, match="context"):
        flow.log_prob(moons(4), context=np.zeros((4, 1), np.float32))


def test_error_nan(flow):
    x = moons(8)
    x[3, 1] = np.nan
    with pytest.raises(flowlib.InvalidArgumentError) as e:
        flow.log_prob(x)
    assert str(e.value) and e.value.status == capi.FLOW_ERR_INVALID_ARGUMENT
    with pytest.raises(flowlib.InvalidArgumentError):
        flow.train_step(x)


def test_error_numeric(flow):
    w = flow.params
    w[:] = np.where(np.arange(w.size) % 3 == 0, 1e30, -1e30)
    flow.params = w
    with pytest.raises(flowlib.NumericError):
        flow.train_step(moons(4))
    assert flow.step_count == 0


def test_error_files(flow, tmp_path):
    with pytest.raises(flowlib.FlowIOError):
        flowlib.Flow.load(tmp_path / "missing.safetensors")
    with pytest.raises(flowlib.FlowIOError):
        flow.save(tmp_path / "no" / "such" / "dir" / "m.safetensors")
    good = flow.to_bytes()
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good[: len(good) // 2])
    with pytest.raises(flowlib.FormatError):
        flowlib.Flow.load(corrupt)
    with pytest.raises(flowlib.FormatError):
        flowlib.Flow.from_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")


def test_closed_flow_raises(flow):
    flow.close()
    flow.close()  # idempotent
    with pytest.raises(flowlib.FlowError, match="closed"):
        flow.log_prob(moons(1))


def test_gil_released_during_training():
    # While one thread is inside a long train_step, another runs Python code.
    f = flowlib.Flow({"preset": "realnvp", "dim": 2, "layers": 8, "hidden": [256, 256]})
    x = moons(2048)
    inside, done = threading.Event(), threading.Event()

    def train():
        inside.set()
        f.train_step(x)  # tens of milliseconds in C
        done.set()

    t = threading.Thread(target=train)
    t.start()
    inside.wait()
    ticks = 0
    while not done.is_set():
        ticks += 1
    t.join()
    f.close()
    # Holding the GIL, the call would block this loop until it returned.
    assert ticks > 1000


def _rss_bytes():
    with open("/proc/self/statm") as s:
        return int(s.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_no_leak_create_free():
    spec = {"preset": "realnvp", "dim": 2, "layers": 4, "hidden": [64, 64]}
    x = moons(4)

    def cycle(count):
        for i in range(count):
            if i % 2:
                with flowlib.Flow(spec, seed=i) as f:
                    f.log_prob(x)
            else:
                flowlib.Flow(spec, seed=i)  # freed by the garbage collector

    cycle(1000)  # allocator pools and caches reach their steady state
    before = _rss_bytes()
    cycle(10_000)
    grown = _rss_bytes() - before
    # One leaked model of this size is ~70 kB: a leak would be ~700 MB.
    assert grown < 16 << 20, f"RSS grew by {grown >> 20} MB over 10,000 create/free cycles"
