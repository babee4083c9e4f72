"""PyTorch interop: `from_torch` / `to_torch` / `from_torch_hidden` / `to_torch_hidden`.

- Numbers: an `nn.RNN` imported with `from_torch` gives, through `rnn_stack`, the module's
  output, `h_n` and the gradients of every weight, the input and `h_0` (float64 1e-12,
  float32 1e-5 relative), for 1–3 layers, both directions, ReLU, no biases, packed batches.
- Round trips: torch → jaxrnn → torch is bitwise identical (`to_torch(..., like=module)`);
  jaxrnn → torch → jaxrnn is bitwise identical; a trained `ba` comes back with `bias_hh` kept
  bitwise and `bias_ih + bias_hh = ba` up to one rounding.
- Bad input: LSTM/GRU weights, missing, unexpected and misshapen keys name the key, what was
  expected and what was received. Tests that need torch skip where it is not installed.
"""

import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOLERANCE, relative_error

import jaxrnn

N_X, N_A, B, T = 3, 4, 3, 5
LENGTHS = [5, 2, 1]  # packed sequences need lengths >= 1
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "migrate_from_torch.py"


def needs_torch():
    return pytest.importorskip("torch")


def torch_rnn(torch, num_layers=2, bidirectional=True, nonlinearity="tanh", batch_first=False, bias=True, seed=0):
    torch.manual_seed(seed)
    module = torch.nn.RNN(
        N_X, N_A, num_layers, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first, bidirectional=bidirectional
    )
    with torch.no_grad():  # biases away from PyTorch's uniform init, so that no sum is trivially exact
        for name, p in module.named_parameters():
            if name.startswith("bias"):
                p.mul_(3.0).add_(0.1)
    return module


def run_torch(torch, module, x, h0, lengths, cotangents):
    """`(output, h_n, dx, dh_0, weight gradients)` of `Σ cotangent · (output, h_n)`; a packed
    batch when `lengths` is given (its output padded with zeros)."""
    x = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(h0, requires_grad=True)
    inputs = x
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), module.batch_first, False)
    output, h_n = module(inputs, h0)
    if lengths is not None:
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, module.batch_first, total_length=T)
    loss = (torch.tensor(cotangents[0]) * output).sum() + (torch.tensor(cotangents[1]) * h_n).sum()
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return output.detach().numpy(), h_n.detach().numpy(), x.grad.numpy(), h0.grad.numpy(), grads


def torch_named(grad_layers, bias):
    """Our gradients under PyTorch's names: `dba` is the gradient of each of the two biases."""
    named = {}
    for l, layer in enumerate(grad_layers):
        for params, suffix in zip(layer if isinstance(layer, tuple) else (layer,), ("", "_reverse")):
            key = f"l{l}{suffix}"
            named |= {f"weight_ih_{key}": params["Wax"], f"weight_hh_{key}": params["Waa"]}
            if bias:
                named |= {f"bias_ih_{key}": params["ba"][:, 0], f"bias_hh_{key}": params["ba"][:, 0]}
    return named


CASES = [
    # (num_layers, bidirectional, nonlinearity, batch_first, packed, bias, dtype)
    (1, False, "tanh", False, False, True, "float64"),
    (1, True, "relu", True, True, True, "float64"),
    (2, False, "relu", False, True, False, "float64"),
    (3, True, "tanh", True, True, True, "float64"),
    (2, True, "tanh", False, False, True, "float32"),
    (3, False, "relu", True, True, False, "float32"),
]


@pytest.mark.parametrize(
    ("num_layers", "bidirectional", "nonlinearity", "batch_first", "packed", "bias", "dtype"), CASES
)
def test_imported_module_computes_the_same_numbers(
    device, num_layers, bidirectional, nonlinearity, batch_first, packed, bias, dtype
):
    torch = needs_torch()
    if dtype == "float64" and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    with jax.enable_x64(dtype == "float64"):
        module = torch_rnn(torch, num_layers, bidirectional, nonlinearity, batch_first, bias).to(getattr(torch, dtype))
        rng = np.random.default_rng(num_layers)
        directions = 2 if bidirectional else 1
        x = rng.standard_normal((B, T, N_X) if batch_first else (T, B, N_X)).astype(dtype)
        h0 = (0.5 * rng.standard_normal((num_layers * directions, B, N_A))).astype(dtype)
        output_shape = (B, T, directions * N_A) if batch_first else (T, B, directions * N_A)
        cotangents = (rng.standard_normal(output_shape).astype(dtype), rng.standard_normal(h0.shape).astype(dtype))
        lengths = LENGTHS if packed else None
        output, h_n, dx, dh0, torch_grads = run_torch(torch, module, x, h0, lengths, cotangents)

        layers, options = jaxrnn.from_torch(module)
        assert options == {"nonlinearity": nonlinearity, "layout": "batch_major" if batch_first else "time_major"}
        seq_lengths = None if lengths is None else jnp.array(lengths)

        def loss(x, a0, layers):
            a, _, finals = jaxrnn.rnn_stack(x, a0, layers, seq_lengths=seq_lengths, return_final_state=True, **options)
            h = jaxrnn.to_torch_hidden(finals)
            return jnp.sum(cotangents[0] * a) + jnp.sum(cotangents[1] * h), (a, h)

        a0 = jaxrnn.from_torch_hidden(h0, layers)
        (_, (a, h)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(jnp.asarray(x), a0, layers)
        grad_x, grad_a0, grad_layers = grads
        tolerance = TOLERANCE[jnp.dtype(dtype).type]
        got = {"output": a, "h_n": h, "dx": grad_x, "dh_0": jaxrnn.to_torch_hidden(grad_a0)}
        got |= torch_named(grad_layers, bias)
        want = {"output": output, "h_n": h_n, "dx": dx, "dh_0": dh0} | torch_grads
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].dtype == jnp.dtype(dtype), name
            assert relative_error(got[name], want[name]) <= tolerance, (name, relative_error(got[name], want[name]))


@pytest.mark.parametrize(
    ("num_layers", "bidirectional", "bias", "dtype"),
    [
        (1, False, True, "float32"),
        (2, True, True, "float32"),
        (3, True, False, "float64"),
        (2, False, True, "bfloat16"),
    ],
)
def test_torch_jaxrnn_torch_is_bitwise_identical(num_layers, bidirectional, bias, dtype):
    torch = needs_torch()
    module = torch_rnn(torch, num_layers, bidirectional, bias=bias).to(getattr(torch, dtype))
    original = module.state_dict()
    with jax.enable_x64(dtype == "float64"):
        layers, _ = jaxrnn.from_torch(module)
        state = jaxrnn.to_torch(layers, like=module)
    assert list(state) == list(original)
    for name, tensor in original.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
    module.load_state_dict(state)  # strict: the keys and shapes nn.RNN expects
    if bias:  # the test can fail: ba − bias_hh alone does not give bias_ih back everywhere
        np_dtype = jnp.dtype(dtype)
        naive = [
            np.subtract(np.asarray(params["ba"][:, 0]), original[f"bias_hh_{key}"].float().numpy().astype(np_dtype))
            for key, params in zip(bias_keys(layers), jax.tree.leaves(layers, is_leaf=lambda p: isinstance(p, dict)))
        ]
        exact = [
            np.array_equal(n, original[f"bias_ih_{key}"].float().numpy()) for n, key in zip(naive, bias_keys(layers))
        ]
        assert not all(exact)


def bias_keys(layers):
    return [
        f"l{l}{s}" for l, layer in enumerate(layers) for s in ("", "_reverse")[: 2 if isinstance(layer, tuple) else 1]
    ]


def test_trained_bias_keeps_bias_hh_and_sums_to_ba():
    torch = needs_torch()
    module = torch_rnn(torch, num_layers=2, bidirectional=True)
    layers, _ = jaxrnn.from_torch(module)
    trained = [tuple(p | {"ba": p["ba"].at[:2].add(0.37)} for p in layer) for layer in layers]  # 2 of 4 rows change
    state = jaxrnn.to_torch(trained, like=module)
    original = module.state_dict()
    for l, layer in enumerate(trained):
        for params, suffix in zip(layer, ("", "_reverse")):
            key = f"l{l}{suffix}"
            ih, hh, ba = (
                state[f"bias_ih_{key}"].numpy(),
                state[f"bias_hh_{key}"].numpy(),
                np.asarray(params["ba"][:, 0]),
            )
            assert torch.equal(state[f"bias_hh_{key}"], original[f"bias_hh_{key}"])
            np.testing.assert_array_equal(ih[2:], original[f"bias_ih_{key}"].numpy()[2:])  # unchanged rows: bitwise
            assert ih[:2].tolist() == (ba[:2] - hh[:2]).tolist()  # changed rows: ba − bias_hh
            ulp = np.spacing(np.maximum(np.abs(ba), np.abs(hh)))
            assert np.all(np.abs((ih + hh) - ba) <= 2 * ulp)  # their sum is ba up to rounding


def test_without_like_bias_ih_is_ba_and_jaxrnn_torch_jaxrnn_is_bitwise():
    torch = needs_torch()
    layers = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(1)
    layers = jax.tree.map(lambda p: p + jnp.asarray(0.1 * rng.standard_normal(p.shape), p.dtype), layers)
    state = jaxrnn.to_torch(layers)
    module = torch.nn.RNN(N_X, N_A, 2, bidirectional=True)
    module.load_state_dict(state)
    np.testing.assert_array_equal(state["bias_ih_l1_reverse"].numpy(), layers[1][1]["ba"][:, 0])
    assert not state["bias_hh_l1_reverse"].any()
    back, _ = jaxrnn.from_torch(module)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(layers)):
        np.testing.assert_array_equal(got, want)


def test_bias_free_module_round_trip_and_refusal():
    torch = needs_torch()
    module = torch_rnn(torch, num_layers=2, bidirectional=False, bias=False)
    layers, _ = jaxrnn.from_torch(module)
    assert not any(jnp.any(layer["ba"]) for layer in layers)
    assert list(jaxrnn.to_torch(layers, bias=False)) == list(module.state_dict())
    layers[1]["ba"] = layers[1]["ba"].at[0, 0].set(1.0)
    with pytest.raises(ValueError, match=r"to_torch: layers\[1\]\['ba'\] is non-zero, but like has no bias"):
        jaxrnn.to_torch(layers, like=module)
    with pytest.raises(ValueError, match=r"nn.RNN\(bias=False\) has no bias"):
        jaxrnn.to_torch(layers, bias=False)


def test_state_dict_of_numpy_arrays_needs_no_torch():
    rng = np.random.default_rng(0)
    state = {
        "weight_ih_l0": rng.standard_normal((N_A, N_X)).astype(np.float32),
        "weight_hh_l0": rng.standard_normal((N_A, N_A)).astype(np.float32),
        "bias_ih_l0": rng.standard_normal(N_A).astype(np.float32),
        "bias_hh_l0": rng.standard_normal(N_A).astype(np.float32),
    }
    layers, options = jaxrnn.from_torch(state, nonlinearity="relu", batch_first=True)
    assert options == {"nonlinearity": "relu", "layout": "batch_major"}
    np.testing.assert_array_equal(layers[0]["Wax"], state["weight_ih_l0"])
    np.testing.assert_array_equal(layers[0]["ba"][:, 0], state["bias_ih_l0"] + state["bias_hh_l0"])
    assert layers[0]["Wax"].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"dtype=float64 needs 64-bit mode, which is off; .* dtype=jnp.float32"):
        jaxrnn.from_torch({k: v.astype(np.float64) for k, v in state.items()})
    half, _ = jaxrnn.from_torch({k: v.astype(np.float64) for k, v in state.items()}, dtype=jnp.bfloat16)
    assert half[0]["Waa"].dtype == jnp.bfloat16


def lstm_like(gates):
    rng = np.random.default_rng(0)
    return {
        "weight_ih_l0": rng.standard_normal((gates * N_A, N_X)),
        "weight_hh_l0": rng.standard_normal((gates * N_A, N_A)),
        "bias_ih_l0": rng.standard_normal(gates * N_A),
        "bias_hh_l0": rng.standard_normal(gates * N_A),
    }


def two_layer_state():
    rng = np.random.default_rng(1)
    shapes = {"ih_l0": (N_A, N_X), "hh_l0": (N_A, N_A), "ih_l1": (N_A, N_A), "hh_l1": (N_A, N_A)}
    state = {f"weight_{k}": rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    return state | {f"bias_{k}": rng.standard_normal(N_A).astype(np.float32) for k in shapes}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            lstm_like(4),
            r"from_torch: state_dict\['weight_ih_l0'\].shape=\(16, 3\); expected \(hidden_size, input_size\) = "
            r"\(4, 3\) \(16 rows are nn.LSTM's four gates",
        ),
        (lstm_like(3), r"state_dict\['weight_ih_l0'\].shape=\(12, 3\); .* \(12 rows are nn.GRU's three gates"),
        (
            {k: v for k, v in two_layer_state().items() if k != "bias_hh_l1"},
            r"does not have the keys of an nn.RNN\(num_layers=2, bidirectional=False, bias=True\): "
            r"missing \['bias_hh_l1'\], unexpected \[\]",
        ),
        (two_layer_state() | {"weight_hr_l0": np.zeros((2, 4))}, r"missing \[\], unexpected \['weight_hr_l0'\]"),
        (
            {"rnn." + k: v for k, v in two_layer_state().items()},
            r"unexpected \['rnn.bias_hh_l0', .*pass that module or its own state_dict\(\)",
        ),
        (
            two_layer_state() | {"weight_hh_l1": np.zeros((N_A, 5), np.float32)},
            r"state_dict\['weight_hh_l1'\].shape=\(4, 5\); expected \(hidden_size, hidden_size\) = \(4, 4\)",
        ),
        (
            two_layer_state() | {"bias_ih_l1": np.zeros(5, np.float32)},
            r"state_dict\['bias_ih_l1'\].shape=\(5,\); expected \(hidden_size,\) = \(4,\)",
        ),
        (
            two_layer_state() | {"weight_ih_l1": np.zeros((N_A, N_X), np.float32)},
            r"state_dict\['weight_ih_l1'\].shape=\(4, 3\); expected \(hidden_size, hidden_size\) = \(4, 4\)",
        ),
        (two_layer_state() | {"bias_ih_l0": np.zeros(N_A, np.int32)}, r"bias_ih_l0'\].dtype=int32 is not a floating"),
        (two_layer_state() | {"bias_ih_l0": np.zeros(N_A, np.float16)}, r"several dtypes .* pass dtype="),
        ({}, r"missing \['weight_ih_l0', 'weight_hh_l0'\]"),
    ],
    ids=[
        "lstm",
        "gru",
        "missing",
        "unexpected",
        "prefixed",
        "hh-shape",
        "bias-shape",
        "ih-shape",
        "int",
        "mixed-dtypes",
        "empty",
    ],
)
def test_bad_state_dicts_say_what_is_wrong(state, message):
    with pytest.raises((ValueError, TypeError), match=message):
        jaxrnn.from_torch(state)


def test_bad_modules_and_options_say_what_is_wrong():
    torch = needs_torch()
    with pytest.raises(TypeError, match=r"from_torch: received an nn.LSTM; .* converts nn.RNN only"):
        jaxrnn.from_torch(torch.nn.LSTM(N_X, N_A))
    with pytest.raises(TypeError, match=r"expected a torch.nn.RNN or its state_dict\(\); received Linear"):
        jaxrnn.from_torch(torch.nn.Linear(2, 2))
    module = torch_rnn(torch, num_layers=2, bidirectional=False)
    with pytest.raises(ValueError, match=r"nonlinearity='relu' contradicts the module's nonlinearity='tanh'"):
        jaxrnn.from_torch(module, nonlinearity="relu")
    layers, _ = jaxrnn.from_torch(module)
    with pytest.raises(ValueError, match=r"like is an nn.RNN\(num_layers=2, bidirectional=False\); layers describe"):
        jaxrnn.to_torch(layers[:1], like=module)
    wide = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A + 1, num_layers=2)
    with pytest.raises(ValueError, match=r"layers\[0\]\['Wax'\].shape=\(5, 3\) does not fit like\['weight_ih_l0'\]"):
        jaxrnn.to_torch(wide, like=module)
    headed = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A, num_layers=2, n_y=2)
    with pytest.raises(ValueError, match=r"layers\[1\] has an output head \(Wya, by\), which nn.RNN does not have"):
        jaxrnn.to_torch(headed)
    mixed = [layers[0], (layers[1], layers[1])]
    with pytest.raises(ValueError, match="all bidirectional or all unidirectional"):
        jaxrnn.to_torch(mixed)
    with pytest.raises(ValueError, match=r"from_torch_hidden: h.shape=\(3, 2, 4\); expected .* = 2 from layers"):
        jaxrnn.from_torch_hidden(np.zeros((3, 2, 4)), layers)


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_to_torch_without_torch_says_so():
    layers = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A)
    with pytest.raises(ImportError, match=r"to_torch: to_torch returns torch tensors, so it needs PyTorch"):
        jaxrnn.to_torch(layers)


def test_importing_jaxrnn_imports_no_framework():
    code = "import sys, jaxrnn; print(sorted(m for m in ('torch', 'flax', 'equinox') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_migration_example_runs():
    needs_torch()
    namespace = runpy.run_path(str(EXAMPLE))
    errors = namespace["main"]()
    assert max(errors.values()) <= 1e-5, errors
