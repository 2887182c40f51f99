"""gradbook.jacobian against Jacobians written by hand, finite differences, PyTensor and Theano.

Every method the chapter and its benchmark compare is checked here against an
analytic Jacobian: the torch row loop, jacrev, jacfwd, auto, the legacy
``autograd.functional.jacobian(vectorize=True)``, PyTensor's scan and vectorised
Jacobians, and Theano's scan (in the legacy environment, when it exists).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOLERANCES, central_differences
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbook import jacobian as jacobian_module
from gradbook.jacobian import (
    MODES,
    DtypeMismatchError,
    choose_mode,
    hessian,
    jacobian,
    jacobian_fwd_explicit,
    jacobian_loop,
    make_tanh_mlp,
    tanh_affine,
    tanh_affine_jacobian,
    tanh_mlp,
    tanh_mlp_jacobian,
)

ROOT = Path(__file__).resolve().parent.parent
THEANO_PYTHON = ROOT / ".venv-theano" / "bin" / "python"
needs_theano = pytest.mark.skipif(
    not THEANO_PYTHON.exists(),
    reason=(
        "the legacy environment .venv-theano does not exist: it needs Python 3.11; "
        "create it with `make env` (or `make theano-env THEANO_PYTHON=/path/to/python3.11`)"
    ),
)

CHUNKS = [None, 1, 3]
ALL_METHODS = [(mode, chunk) for mode in MODES for chunk in CHUNKS if mode != "loop"] + [
    ("loop", None)
]
METHOD_IDS = [f"{mode}-chunk{chunk}" for mode, chunk in ALL_METHODS]


def close(actual, expected, dtype):
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol * 10, atol=atol * 10)


# --------------------------------------------------------------------------- analytic references


def test_analytic_references_match_finite_differences(generator):
    A = torch.randn(7, 4, generator=generator, dtype=torch.float64)
    x = torch.randn(4, generator=generator, dtype=torch.float64)
    fd = central_differences(lambda z: tanh_affine(A, z), x)
    torch.testing.assert_close(tanh_affine_jacobian(A, x), fd, rtol=1e-7, atol=1e-9)
    params = make_tanh_mlp(4, 6, hidden=5, generator=generator)
    fd = central_differences(lambda z: tanh_mlp(params, z), x)
    torch.testing.assert_close(tanh_mlp_jacobian(params, x), fd, rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------- every mode


@pytest.mark.parametrize(("mode", "chunk"), ALL_METHODS, ids=METHOD_IDS)
def test_seed_example_is_diag_2x(mode, chunk, device, dtype):
    """The forum's example: y = x**2 at x = [4, 4] has J = [[8, 0], [0, 8]]."""
    x = torch.tensor([4.0, 4.0], dtype=dtype, device=device)
    J = jacobian(lambda z: z**2, x, mode, chunk)
    assert J.tolist() == [[8.0, 0.0], [0.0, 8.0]]
    x = torch.tensor([1.0, -2.0, 3.0], dtype=dtype, device=device)
    close(jacobian(lambda z: z**2, x, mode, chunk), torch.diag(2 * x), dtype)


@pytest.mark.parametrize(("mode", "chunk"), ALL_METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize(("n", "m"), [(3, 7), (7, 3), (5, 5)], ids=["tall", "wide", "square"])
def test_tanh_affine(mode, chunk, n, m, device, dtype, generator):
    A = torch.randn(m, n, generator=generator, dtype=dtype).to(device)
    x = torch.randn(n, generator=generator, dtype=dtype).to(device)
    J = jacobian(lambda z: tanh_affine(A, z), x, mode, chunk)
    assert J.shape == (m, n)
    assert J.dtype == dtype and J.device.type == device.type
    close(J, tanh_affine_jacobian(A, x), dtype)


@pytest.mark.parametrize(("mode", "chunk"), ALL_METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize(("n", "m"), [(2, 9), (9, 2)], ids=["tall", "wide"])
def test_tanh_mlp(mode, chunk, n, m, device, generator):
    params = make_tanh_mlp(n, m, hidden=6, generator=generator, device=device)
    x = torch.randn(n, generator=generator, dtype=torch.float64).to(device)
    J = jacobian(lambda z: tanh_mlp(params, z), x, mode, chunk)
    close(J, tanh_mlp_jacobian(params, x), torch.float64)


@pytest.mark.parametrize(("mode", "chunk"), ALL_METHODS, ids=METHOD_IDS)
def test_matrix_input_and_output_layout(mode, chunk, device, generator):
    """f(X) = X @ B for X (p, q): J[i, j, k, l] = d (XB)_ij / d X_kl = delta_ik B_lj."""
    p, q, r = 2, 3, 4
    X = torch.randn(p, q, generator=generator, dtype=torch.float64).to(device)
    B = torch.randn(q, r, generator=generator, dtype=torch.float64).to(device)
    expected = torch.einsum("ik,lj->ijkl", torch.eye(p, dtype=X.dtype, device=device), B)
    J = jacobian(lambda Z: Z @ B, X, mode, chunk)
    assert J.shape == (p, r, p, q)
    close(J, expected, torch.float64)


@pytest.mark.parametrize(("mode", "chunk"), ALL_METHODS, ids=METHOD_IDS)
def test_scalar_output_is_the_gradient(mode, chunk, generator):
    x = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    J = jacobian(lambda z: (z**3).sum(), x, mode, chunk)
    assert J.shape == (3, 2)
    close(J, 3 * x**2, torch.float64)


@pytest.mark.parametrize("mode", MODES)
def test_scalar_input(mode):
    t = torch.tensor(0.3, dtype=torch.float64)
    J = jacobian(lambda z: torch.stack([z.sin(), z.cos(), z * z]), t, mode)
    assert J.shape == (3,)
    close(J, torch.stack([t.cos(), -t.sin(), 2 * t]), torch.float64)
    assert jacobian(lambda z: z.exp(), t, mode).shape == ()


@pytest.mark.parametrize("mode", MODES)
def test_outputs_that_do_not_depend_on_x_have_zero_rows(mode, generator):
    x = torch.randn(3, generator=generator, dtype=torch.float64)
    constant = torch.ones(2, dtype=torch.float64)
    assert jacobian(lambda z: constant * 1.0, x, mode).tolist() == [[0.0] * 3] * 2
    J = jacobian(lambda z: torch.cat([z[:1] ** 2, constant]), x, mode)
    assert J.tolist() == [[2 * x[0].item(), 0.0, 0.0], [0.0] * 3, [0.0] * 3]


@pytest.mark.parametrize("mode", MODES)
def test_empty_input_and_output(mode):
    x = torch.arange(3.0, dtype=torch.float64)
    assert jacobian(lambda z: z[:0], x, mode).shape == (0, 3)
    empty = torch.zeros(0, dtype=torch.float64)
    extra = torch.ones(2, dtype=torch.float64)
    assert jacobian(lambda z: torch.cat([z, extra]), empty, mode).shape == (2, 0)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 6),
    m=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    chunk=st.sampled_from([None, 1, 2, 5]),
)
def test_every_mode_matches_the_analytic_jacobian(n, m, seed, chunk):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=g, dtype=torch.float64)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    expected = tanh_affine_jacobian(A, x)
    for mode in MODES:
        torch.testing.assert_close(
            jacobian(lambda z: tanh_affine(A, z), x, mode, chunk), expected, rtol=1e-12, atol=1e-14
        )


def test_legacy_autograd_functional_vectorize(generator):
    """The benchmark's legacy method gives the same Jacobian (it is only slower)."""
    params = make_tanh_mlp(4, 6, hidden=5, generator=generator)
    x = torch.randn(4, generator=generator, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda z: tanh_mlp(params, z), x, vectorize=True)
    close(J, tanh_mlp_jacobian(params, x), torch.float64)


# --------------------------------------------------------------------------- the loop


def test_loop_leaves_x_alone(generator):
    x = torch.randn(4, generator=generator, dtype=torch.float64).requires_grad_(True)
    J = jacobian_loop(lambda z: z.sin(), x)
    assert x.grad is None
    assert not J.requires_grad
    close(J, torch.diag(x.detach().cos()), torch.float64)


def test_loop_runs_f_once_and_one_backward_per_row(generator, monkeypatch):
    calls, grads = [], []
    real_grad = torch.autograd.grad

    def spy_grad(*args, **kwargs):
        grads.append(kwargs.get("retain_graph"))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy_grad)
    x = torch.randn(3, generator=generator, dtype=torch.float64)
    jacobian_loop(lambda z: calls.append(1) or torch.tanh(torch.cat([z, z])), x)
    assert len(calls) == 1
    # retain the graph for every row but the last, which frees it
    assert grads == [True] * 5 + [False]


# --------------------------------------------------------------------------- auto


def test_choose_mode():
    assert choose_mode(n_in=10, n_out=1000) == "fwd"  # tall
    assert choose_mode(n_in=1000, n_out=10) == "rev"  # wide
    assert choose_mode(n_in=5, n_out=5) == "rev"
    assert choose_mode(n_in=1, n_out=2) == "fwd"
    with pytest.raises(ValueError, match="n_in: expected an int >= 0, got -1"):
        choose_mode(-1, 3)
    with pytest.raises(TypeError, match=re.escape("n_out: expected an int >= 0, got float 2.5")):
        choose_mode(3, 2.5)


@pytest.mark.parametrize(
    ("n", "m", "expected"), [(3, 12, "jacfwd"), (12, 3, "jacrev"), (4, 4, "jacrev")]
)
def test_auto_calls_forward_for_tall_and_reverse_for_wide(n, m, expected, monkeypatch, generator):
    called = []
    for name in ("jacfwd", "jacrev"):
        real = getattr(torch.func, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            called.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch.func, name, spy)
    A = torch.randn(m, n, generator=generator, dtype=torch.float64)
    x = torch.randn(n, generator=generator, dtype=torch.float64)
    close(jacobian(lambda z: tanh_affine(A, z), x), tanh_affine_jacobian(A, x), torch.float64)
    assert called == [expected]


def test_chunk_size_reaches_jacrev(monkeypatch, generator):
    seen = []
    real = torch.func.jacrev

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_size"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.func, "jacrev", spy)
    x = torch.randn(5, generator=generator, dtype=torch.float64)
    jacobian(lambda z: z.sin(), x, mode="rev", chunk_size=2)
    assert seen == [2]


def test_forward_chunks_bound_the_batch(monkeypatch, generator):
    """With chunk_size, forward mode never pushes more than chunk_size tangents at once."""
    sizes = []
    real = jacobian_module._basis_chunks

    def spy(*args, **kwargs):
        chunks = real(*args, **kwargs)
        sizes.extend(c.shape[0] for c in chunks)
        return chunks

    monkeypatch.setattr(jacobian_module, "_basis_chunks", spy)
    x = torch.randn(7, generator=generator, dtype=torch.float64)
    J = jacobian(lambda z: torch.cat([z, z]).sin(), x, mode="fwd", chunk_size=3)
    assert sizes == [3, 3, 1]
    close(J, torch.cat([torch.diag(x.cos())] * 2), torch.float64)


# --------------------------------------------------------------------------- composition


def test_reverse_and_forward_jacobians_are_differentiable(generator):
    A = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    x = torch.randn(4, generator=generator, dtype=torch.float64, requires_grad=True)
    for mode in ("rev", "fwd", "auto"):
        assert torch.autograd.gradcheck(
            lambda z, mode=mode: jacobian(lambda u: tanh_affine(A, u), z, mode), (x,)
        )


def test_hessian_of_quadratic_plus_quartic(generator):
    Q = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    x = torch.randn(4, generator=generator, dtype=torch.float64)
    H = hessian(lambda z: 0.5 * z @ Q @ z + (z**4).sum(), x)
    close(H, 0.5 * (Q + Q.T) + torch.diag(12 * x**2), torch.float64)
    H2 = hessian(lambda z: 0.5 * z @ Q @ z + (z**4).sum(), x, chunk_size=1)
    close(H2, H, torch.float64)


def test_hessian_of_logsumexp(generator):
    """H = diag(p) - p p^T with p = softmax(x)."""
    x = torch.randn(5, generator=generator, dtype=torch.float64)
    p = torch.softmax(x, 0)
    H = hessian(lambda z: torch.logsumexp(z, 0), x)
    close(H, torch.diag(p) - torch.outer(p, p), torch.float64)
    close(H, H.T, torch.float64)
    # the Jacobian of the gradient, in any mode, is the same matrix
    for mode in ("rev", "fwd"):
        J = jacobian(lambda z: torch.softmax(z, 0), x, mode)
        close(J, H, torch.float64)


def test_hessian_rejects_vector_functions(generator):
    x = torch.randn(3, generator=generator, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"expected a scalar output.*got shape \(3,\)"):
        hessian(lambda z: z**2, x)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("mode", MODES)
def test_non_tensor_output(mode):
    x = torch.ones(2, dtype=torch.float64)
    with pytest.raises(
        TypeError, match=re.escape("f: expected f(x) to return a torch.Tensor, got tuple")
    ):
        jacobian(lambda z: (z, z), x, mode)
    with pytest.raises(TypeError, match="got float"):
        jacobian(lambda z: 3.0, x, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk", [None, 1])
def test_mismatched_dtypes(mode, chunk):
    x = torch.ones(2, dtype=torch.float64)
    message = "f: f\\(x\\) has dtype torch.float32 but x has dtype torch.float64"
    with pytest.raises(DtypeMismatchError, match=message):
        jacobian(lambda z: z.float() * 2, x, mode, chunk)
    # the error is both a TypeError and a ValueError
    with pytest.raises(TypeError, match=message):
        jacobian(lambda z: z.float() * 2, x, mode, chunk)
    with pytest.raises(ValueError, match=message):
        jacobian(lambda z: z.float() * 2, x, mode, chunk)


@pytest.mark.parametrize("mode", MODES)
def test_parameters_in_another_dtype(mode):
    A = torch.ones(3, 2)  # float32
    x = torch.ones(2, dtype=torch.float64)
    with pytest.raises(
        DtypeMismatchError, match=re.escape("f: failed for x of dtype torch.float64")
    ):
        jacobian(lambda z: A @ z, x, mode)


@pytest.mark.parametrize("chunk", [0, -3])
def test_chunk_size_below_one(chunk):
    x = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"chunk_size: expected None or an int >= 1, got {chunk}"):
        jacobian(lambda z: z, x, "rev", chunk)
    with pytest.raises(ValueError, match="chunk_size"):
        hessian(lambda z: z.sum(), x, chunk_size=chunk)


@pytest.mark.parametrize("chunk", [1.5, True, "2"])
def test_chunk_size_not_an_int(chunk):
    with pytest.raises(TypeError, match="chunk_size: expected None or an int >= 1"):
        jacobian(lambda z: z, torch.ones(2), "rev", chunk)


def test_bad_mode_and_bad_inputs():
    x = torch.ones(2)
    with pytest.raises(
        ValueError,
        match=re.escape("mode: expected one of 'auto', 'rev', 'fwd', 'loop', got 'reverse'"),
    ):
        jacobian(lambda z: z, x, mode="reverse")
    with pytest.raises(TypeError, match=re.escape("x: expected a torch.Tensor, got list")):
        jacobian(lambda z: z, [1.0, 2.0])
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor.*torch\.int64"):
        jacobian(lambda z: z, torch.arange(3))
    with pytest.raises(TypeError, match="f: expected a callable"):
        jacobian("f", x)
    with pytest.raises(TypeError, match="f: expected a callable"):
        jacobian_loop(None, x)


def test_make_tanh_mlp_validates():
    with pytest.raises(ValueError, match="hidden: expected an int >= 1, got 0"):
        make_tanh_mlp(3, 4, hidden=0)
    with pytest.raises(TypeError, match=r"n: expected an int >= 1, got float 3\.0"):
        make_tanh_mlp(3.0, 4)


# --------------------------------------------------------------------------- PyTensor


def test_pytensor_scan_and_vectorized_jacobians(generator):
    """PyTensor's jacobian, with and without vectorize=True, against the analytic one."""
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt
    from pytensor.gradient import jacobian as pt_jacobian

    A = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    x = torch.randn(3, generator=generator, dtype=torch.float64)
    expected = tanh_affine_jacobian(A, x).numpy()
    xs, As = pt.dvector("x"), pt.dmatrix("A")
    y = pt.tanh(As @ xs)
    for vectorize in (False, True):
        fn = pytensor.function([As, xs], pt_jacobian(y, xs, vectorize=vectorize))
        np.testing.assert_allclose(fn(A.numpy(), x.numpy()), expected, rtol=1e-12, atol=1e-14)
    # the forum's own scan, ported: pytensor.scan over T.grad(y[i], x)
    sq = xs**2
    rows = pytensor.scan(
        lambda i, sq, xs: pytensor.grad(sq[i], xs),
        sequences=pt.arange(sq.shape[0]),
        non_sequences=[sq, xs],
        return_updates=False,
    )
    assert pytensor.function([xs], rows)([4.0, 4.0]).tolist() == [[8.0, 0.0], [0.0, 8.0]]


# --------------------------------------------------------------------------- Theano (legacy env)

SEED_CODE = """
import logging, warnings
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)
import theano
import theano.tensor as T
x = T.dvector('x')
y = x ** 2
J, updates = theano.scan(lambda i, y,x : T.grad(y[i], x), sequences=T.arange(y.shape[0]), non_sequences=[y,x])
f = theano.function([x], J, updates=updates)
print(f([4, 4]).tolist())
"""  # noqa: E501 (the forum's line, verbatim)

TANH_CODE = """
import json, sys, logging, warnings
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)
import numpy as np
import theano
import theano.tensor as T
data = json.load(sys.stdin)
x, A = T.dvector("x"), T.dmatrix("A")
fn = theano.function([A, x], theano.gradient.jacobian(T.tanh(T.dot(A, x)), x))
print(json.dumps(fn(np.array(data["A"]), np.array(data["x"])).tolist()))
"""


def run_theano(code: str | None, tmp_path: Path, args=(), stdin: str | None = None) -> str:
    env = dict(os.environ)
    env["THEANO_FLAGS"] = f"cxx=,blas__ldflags=,base_compiledir={tmp_path / 'theano'}"
    command = [str(THEANO_PYTHON), *(["-c", code] if code else []), *args]
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_theano
def test_theano_seed_example_runs_live(tmp_path):
    """The forum's exact Theano code prints [[8, 0], [0, 8]] in the legacy environment."""
    assert run_theano(SEED_CODE, tmp_path).strip() == "[[8.0, 0.0], [0.0, 8.0]]"


@needs_theano
def test_theano_jacobian_matches_the_analytic_one(tmp_path, generator):
    A = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    x = torch.randn(4, generator=generator, dtype=torch.float64)
    stdin = json.dumps({"A": A.tolist(), "x": x.tolist()})
    got = torch.tensor(
        json.loads(run_theano(TANH_CODE, tmp_path, stdin=stdin)), dtype=torch.float64
    )
    close(got, tanh_affine_jacobian(A, x), torch.float64)


@needs_theano
def test_theano_benchmark_script(tmp_path):
    """The script the benchmark merges: valid JSON, one row per size and function, exact."""
    script = ROOT / "benchmarks" / "theano_jacobian_timings.py"
    out = run_theano(None, tmp_path, args=[str(script), "--sizes", "2", "5", "--repeat", "1"])
    payload = json.loads(out.strip().splitlines()[-1])
    assert payload["theano"] == "1.1.2" and payload["numpy"] == "1.23.5"
    rows = payload["rows"]
    assert {(r["function"], r["n"], r["m"]) for r in rows} == {
        (f, n, m) for f in ("mlp", "tanh_affine") for n in (2, 5) for m in (2, 5)
    }
    assert all(r["method"] == "Theano scan" and r["median_s"] > 0 for r in rows)
    assert max(r["max_abs_err"] for r in rows) < 1e-12


def test_auto_probes_once_per_function_and_input_shape(monkeypatch, generator):
    import gradbook.jacobian as module

    probes = []
    real = module._probe_shape

    def counting_probe(f, x):
        probes.append(tuple(x.shape))
        return real(f, x)

    monkeypatch.setattr(module, "_probe_shape", counting_probe)
    A = torch.randn(6, 2, generator=generator, dtype=torch.float64)

    def f(z):
        return tanh_affine(A, z)

    x = torch.randn(2, generator=generator, dtype=torch.float64)
    for _ in range(3):
        close(jacobian(f, x), tanh_affine_jacobian(A, x), torch.float64)
    assert probes == [(2,)]
    # another input shape is probed again; a new function too
    jacobian(lambda z: z**2, torch.ones(3, dtype=torch.float64))
    assert len(probes) == 2


# --------------------------------------------------------------------------- explicit constants


def mlp_of(z, params):
    return tanh_mlp(params, z)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(("n", "m"), [(2, 9), (9, 2), (4, 4)], ids=["tall", "wide", "square"])
def test_explicit_constants_match_the_analytic_jacobian(chunk, n, m, device, generator):
    params = make_tanh_mlp(n, m, hidden=6, generator=generator, device=device)
    x = torch.randn(n, generator=generator, dtype=torch.float64).to(device)
    J = jacobian_fwd_explicit(mlp_of, x, params, chunk)
    assert J.shape == (m, n) and J.device.type == device.type
    close(J, tanh_mlp_jacobian(params, x), torch.float64)


@pytest.mark.parametrize("container", [tuple, list, "tensor"])
def test_explicit_constants_as_tensor_tuple_or_list(container, device, dtype, generator):
    A = torch.randn(5, 3, generator=generator, dtype=dtype).to(device)
    x = torch.randn(3, generator=generator, dtype=dtype).to(device)
    if container == "tensor":
        J = jacobian_fwd_explicit(lambda z, c: tanh_affine(c, z), x, A)
    else:
        J = jacobian_fwd_explicit(lambda z, c: tanh_affine(c[0], z), x, container([A]))
    close(J, tanh_affine_jacobian(A, x), dtype)


def test_explicit_constants_keep_the_layout(generator):
    """f(X, B) = X @ B for X (p, q): J[i, j, k, l] = delta_ik B_lj, as for jacobian."""
    X = torch.randn(2, 3, generator=generator, dtype=torch.float64)
    B = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    expected = torch.einsum("ik,lj->ijkl", torch.eye(2, dtype=X.dtype), B)
    for chunk in (None, 4):
        close(jacobian_fwd_explicit(lambda Z, c: Z @ c, X, B, chunk), expected, torch.float64)


def test_explicit_constants_with_an_empty_input():
    B = torch.ones(3, dtype=torch.float64)
    J = jacobian_fwd_explicit(lambda z, c: z.sum() * c, torch.ones(0, dtype=torch.float64), B)
    assert J.shape == (3, 0)


def test_explicit_constants_jacobian_is_differentiable(generator):
    """In x and in the constants; gradcheck compares with finite differences."""
    params = make_tanh_mlp(3, 4, hidden=5, generator=generator)
    x = torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: jacobian_fwd_explicit(mlp_of, z, params), (x,))
    W2 = params["W2"].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda W: jacobian_fwd_explicit(mlp_of, x.detach(), dict(params, W2=W)), (W2,)
    )


def _python_meta_kernels(fn) -> list[str]:
    """The ``prims::`` ops (Python reference kernels) that one call of ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sorted({event.name for event in prof.events() if event.name.startswith("prims::")})


def test_captured_constants_take_a_python_kernel_only_in_jacfwd(generator):
    """The cause chapter 3 names for jacfwd's overhead, and the cure, as run by torch 2.13.

    A bias captured by a closure gets a ZeroTensor tangent in forward mode, and the
    add works out its shape with a Python reference kernel (``prims::add``);
    reverse mode and explicit constants with dense zero tangents never do. If a
    later PyTorch changes this, the first assertion fails and the chapter's
    explanation must be revisited.
    """
    params = make_tanh_mlp(3, 5, hidden=4, generator=generator)
    x = torch.randn(3, generator=generator, dtype=torch.float64)

    def f(z):
        return tanh_mlp(params, z)

    assert "prims::add" in _python_meta_kernels(lambda: torch.func.jacfwd(f)(x))
    assert _python_meta_kernels(lambda: torch.func.jacrev(f)(x)) == []
    assert _python_meta_kernels(lambda: jacobian_fwd_explicit(mlp_of, x, params)) == []


def test_explicit_constants_are_validated():
    x = torch.ones(2, dtype=torch.float64)
    W = torch.eye(2, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"constants\[1\]: expected a floating-point"):
        jacobian_fwd_explicit(lambda z, c: c[0] @ z, x, (W, torch.ones(2, dtype=torch.int64)))
    with pytest.raises(TypeError, match=r"constants\['b'\]: expected a torch.Tensor, got float"):
        jacobian_fwd_explicit(lambda z, c: z + c["b"], x, {"b": 1.0})
    with pytest.raises(TypeError, match="constants: expected a tensor, or a tuple, list or dict"):
        jacobian_fwd_explicit(lambda z, c: z * c, x, 2.0)
    with pytest.raises(TypeError, match="f: expected a callable"):
        jacobian_fwd_explicit("f", x, W)
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        jacobian_fwd_explicit(lambda z, c: c @ z, torch.ones(2, dtype=torch.int64), W)
    with pytest.raises(ValueError, match="chunk_size: expected None or an int >= 1, got 0"):
        jacobian_fwd_explicit(lambda z, c: c @ z, x, W, chunk_size=0)
    with pytest.raises(DtypeMismatchError, match=r"f: f\(x\) has dtype torch\.float32"):
        jacobian_fwd_explicit(lambda z, c: (c @ z).float(), x, W)
