"""Cross-language check (ctest bindings_python_cross): every model saved by C
or another binding loads here and gives the saver's log-densities bit for bit."""
import numpy as np

import flowlib


def test_models_from_every_language(scratch):
    data = np.fromfile(scratch / "data.f32", dtype="<f4").reshape(-1, 2)
    models = sorted(scratch.glob("model_*.safetensors"))
    langs = {p.stem[len("model_"):] for p in models}
    assert "c" in langs and len(langs) >= 2, f"only {langs} found"
    for path in models:
        lang = path.stem[len("model_"):]
        want = np.fromfile(scratch / f"logprob_{lang}.f32", dtype="<f4")
        with flowlib.Flow.load(path) as f:
            assert f.log_prob(data).tobytes() == want.tobytes(), f"model saved by {lang}"
