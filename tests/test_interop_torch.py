"""PyTorch interop: `from_torch` / `to_torch` / `from_torch_hidden` / `to_torch_hidden` for
`nn.RNN`, `nn.GRU` and `nn.LSTM`.

- Numbers: a module imported with `from_torch` gives, through `rnn_stack`, the module's output,
  `h_n` (and `c_n`) and the gradients of every weight, bias, the input and `h_0` (and `c_0`)
  (float64 1e-12, float32 1e-5 relative), for the three cells, 1–3 layers, both directions,
  ReLU, no biases, `batch_first`, packed batches; the states go through `from_torch_hidden`
  and `to_torch_hidden`, the gradient with respect to `a0` too.
- Round trips: torch → jaxrnn → torch is bitwise identical (`to_torch(..., like=module)`);
  jaxrnn → torch → jaxrnn is bitwise identical; a trained `ba` comes back with `bias_hh` kept
  bitwise and `bias_ih + bias_hh = ba` up to one rounding, the GRU's `b_in` and `b_hn` exactly.
- Bad input: projections, contradicting cells, missing, unexpected and misshapen keys name the
  key, what was expected and what was received; ambiguous states are read as documented.
  Tests that need torch skip where it is not installed.
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
from helpers import TOLERANCE, fast_and_slow, relative_error

import jaxrnn

N_X, N_A, B, T = 3, 4, 3, 5
LENGTHS = [5, 2, 1]  # packed sequences need lengths >= 1
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "migrate_from_torch.py"
GATES = {"vanilla": 1, "gru": 3, "lstm": 4}


def needs_torch():
    return pytest.importorskip("torch")


def torch_module(
    torch, cell="vanilla", num_layers=2, bidirectional=True, nonlinearity="tanh", batch_first=False, bias=True, seed=0
):
    torch.manual_seed(seed)
    kind = {"vanilla": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
    options = {"nonlinearity": nonlinearity} if cell == "vanilla" else {}
    module = kind(N_X, N_A, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, **options)
    with torch.no_grad():  # biases away from PyTorch's uniform init, so that no sum is trivially exact
        for name, p in module.named_parameters():
            if name.startswith("bias"):
                p.mul_(3.0).add_(0.1)
    return module


def run_torch(torch, module, x, hidden, lengths, cotangents):
    """`(output, finals, dx, dhidden, weight gradients)` of `Σ cotangent · (output, h_n[, c_n])`;
    `hidden` is `[h_0]` or `[h_0, c_0]`; a packed batch when `lengths` is given (its output
    padded with zeros)."""
    x = torch.tensor(x, requires_grad=True)
    hidden = [torch.tensor(h, requires_grad=True) for h in hidden]
    inputs = x
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), module.batch_first, False)
    output, finals = module(inputs, tuple(hidden) if len(hidden) == 2 else hidden[0])
    if lengths is not None:
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, module.batch_first, total_length=T)
    finals = finals if isinstance(finals, tuple) else (finals,)
    loss = (torch.tensor(cotangents[0]) * output).sum()
    loss = loss + sum((torch.tensor(c) * f).sum() for c, f in zip(cotangents[1], finals))
    module.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    finals = [f.detach().numpy() for f in finals]
    return output.detach().numpy(), finals, x.grad.numpy(), [h.grad.numpy() for h in hidden], grads


def torch_named(grad_layers, cell, bias):
    """Our gradients under PyTorch's names: `dba` is the gradient of each of the two biases,
    but for the GRU's n rows of `bias_hh` (`b_hn`), whose gradient is `dbhn`."""
    named = {}
    for l, layer in enumerate(grad_layers):
        for params, suffix in zip(layer if isinstance(layer, tuple) else (layer,), ("", "_reverse")):
            key = f"l{l}{suffix}"
            named |= {f"weight_ih_{key}": params["Wax"], f"weight_hh_{key}": params["Waa"]}
            if bias:
                dba = params["ba"][:, 0]
                dhh = jnp.concatenate([dba[: 2 * N_A], params["bhn"][:, 0]]) if cell == "gru" else dba
                named |= {f"bias_ih_{key}": dba, f"bias_hh_{key}": dhh}
    return named


CASES = [
    # (cell, num_layers, bidirectional, nonlinearity, batch_first, packed, bias, dtype)
    ("vanilla", 1, False, "tanh", False, False, True, "float64"),
    ("vanilla", 1, True, "relu", True, True, True, "float64"),
    ("vanilla", 2, False, "relu", False, True, False, "float64"),
    ("vanilla", 3, True, "tanh", True, True, True, "float64"),
    ("vanilla", 2, True, "tanh", False, False, True, "float32"),
    ("vanilla", 3, False, "relu", True, True, False, "float32"),
    ("gru", 1, False, "tanh", False, False, True, "float64"),
    ("gru", 2, True, "tanh", True, True, True, "float64"),
    ("gru", 3, False, "tanh", False, True, False, "float64"),
    ("gru", 2, True, "tanh", False, True, True, "float32"),
    ("lstm", 1, True, "tanh", False, True, True, "float64"),
    ("lstm", 2, False, "tanh", True, False, True, "float64"),
    ("lstm", 3, True, "tanh", True, True, False, "float64"),
    ("lstm", 2, True, "tanh", True, True, True, "float32"),
]


# The default run: one case per cell (packed, bidirectional, float32 once); the rest with `-m ""`.
@pytest.mark.parametrize(
    ("cell", "num_layers", "bidirectional", "nonlinearity", "batch_first", "packed", "bias", "dtype"),
    fast_and_slow(CASES, {1, 7, 11, 13}),
)
def test_imported_module_computes_the_same_numbers(
    device, cell, num_layers, bidirectional, nonlinearity, batch_first, packed, bias, dtype
):
    torch = needs_torch()
    if dtype == "float64" and device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    with jax.enable_x64(dtype == "float64"):
        module = torch_module(torch, cell, num_layers, bidirectional, nonlinearity, batch_first, bias)
        module = module.to(getattr(torch, dtype))
        rng = np.random.default_rng(num_layers)
        directions = 2 if bidirectional else 1
        x = rng.standard_normal((B, T, N_X) if batch_first else (T, B, N_X)).astype(dtype)
        parts = 2 if cell == "lstm" else 1
        hidden = [(0.5 * rng.standard_normal((num_layers * directions, B, N_A))).astype(dtype) for _ in range(parts)]
        output_shape = (B, T, directions * N_A) if batch_first else (T, B, directions * N_A)
        cotangents = (
            rng.standard_normal(output_shape).astype(dtype),
            [rng.standard_normal(hidden[0].shape).astype(dtype) for _ in range(parts)],
        )
        lengths = LENGTHS if packed else None
        output, finals, dx, dhidden, torch_grads = run_torch(torch, module, x, hidden, lengths, cotangents)

        layers, options = jaxrnn.from_torch(module)
        expected = {"cell": cell} | ({"nonlinearity": nonlinearity} if cell == "vanilla" else {})
        assert options == expected | {"layout": "batch_major" if batch_first else "time_major"}
        seq_lengths = None if lengths is None else jnp.array(lengths)
        as_list = lambda states: list(states) if cell == "lstm" else [states]  # h_n, or (h_n, c_n)

        def loss(x, a0, layers):
            a, _, states = jaxrnn.rnn_stack(x, a0, layers, seq_lengths=seq_lengths, return_final_state=True, **options)
            final = as_list(jaxrnn.to_torch_hidden(states))
            return jnp.sum(cotangents[0] * a) + sum(jnp.sum(c * f) for c, f in zip(cotangents[1], final)), (a, final)

        a0 = jaxrnn.from_torch_hidden(tuple(hidden) if cell == "lstm" else hidden[0], layers)
        (_, (a, final)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(jnp.asarray(x), a0, layers)
        grad_x, grad_a0, grad_layers = grads
        tolerance = TOLERANCE[jnp.dtype(dtype).type]
        names = ("h", "c")[:parts]
        got = {"output": a, "dx": grad_x} | {f"{n}_n": f for n, f in zip(names, final)}
        got |= {f"d{n}_0": g for n, g in zip(names, as_list(jaxrnn.to_torch_hidden(grad_a0)))}
        got |= torch_named(grad_layers, cell, bias)
        want = {"output": output, "dx": dx} | {f"{n}_n": f for n, f in zip(names, finals)}
        want |= {f"d{n}_0": g for n, g in zip(names, dhidden)} | torch_grads
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].dtype == jnp.dtype(dtype), name
            assert relative_error(got[name], want[name]) <= tolerance, (name, relative_error(got[name], want[name]))


@pytest.mark.parametrize("cell", ["vanilla", "gru", "lstm"])
@pytest.mark.parametrize(
    ("num_layers", "bidirectional", "bias", "dtype"),
    [
        (1, False, True, "float32"),
        (2, True, True, "float32"),
        (3, True, False, "float64"),
        (2, False, True, "bfloat16"),
    ],
)
def test_torch_jaxrnn_torch_is_bitwise_identical(cell, num_layers, bidirectional, bias, dtype):
    torch = needs_torch()
    module = torch_module(torch, cell, num_layers, bidirectional, bias=bias).to(getattr(torch, dtype))
    original = module.state_dict()
    with jax.enable_x64(dtype == "float64"):
        layers, _ = jaxrnn.from_torch(module)
        state = jaxrnn.to_torch(layers, like=module)
        from_state_dict, _ = jaxrnn.from_torch(original)  # the cell read from the gate count
    assert list(state) == list(original)
    for name, tensor in original.items():
        assert state[name].dtype == tensor.dtype and torch.equal(state[name], tensor), name
    for got, want in zip(jax.tree.leaves(from_state_dict), jax.tree.leaves(layers)):
        np.testing.assert_array_equal(got, want)
    module.load_state_dict(state)  # strict: the keys and shapes the module expects
    if bias:  # the test can fail: ba − bias_hh alone does not give bias_ih back everywhere
        np_dtype = jnp.dtype(dtype)
        keys = bias_keys(layers)
        flat = jax.tree.leaves(layers, is_leaf=lambda p: isinstance(p, dict))
        naive = [
            np.subtract(np.asarray(p["ba"][:, 0]), original[f"bias_hh_{k}"].float().numpy().astype(np_dtype))
            for k, p in zip(keys, flat)
        ]
        exact = [np.array_equal(n, original[f"bias_ih_{k}"].float().numpy()) for n, k in zip(naive, keys)]
        assert not all(exact)


def bias_keys(layers):
    return [
        f"l{l}{s}" for l, layer in enumerate(layers) for s in ("", "_reverse")[: 2 if isinstance(layer, tuple) else 1]
    ]


@pytest.mark.parametrize("cell", ["vanilla", "gru", "lstm"])
def test_trained_bias_keeps_bias_hh_and_sums_to_ba(cell):
    torch = needs_torch()
    module = torch_module(torch, cell, num_layers=2, bidirectional=True)
    layers, _ = jaxrnn.from_torch(module)
    G = GATES[cell]

    def train(p):  # the first two rows of every gate change, and the GRU's bhn
        rows = np.zeros(G * N_A, bool)
        for k in range(G):
            rows[k * N_A : k * N_A + 2] = True
        return p | {"ba": p["ba"] + 0.37 * rows[:, None]} | ({"bhn": p["bhn"] - 0.25} if cell == "gru" else {})

    trained = [tuple(train(p) for p in layer) for layer in layers]
    state = jaxrnn.to_torch(trained, like=module)
    original = module.state_dict()
    for l, layer in enumerate(trained):
        for params, suffix in zip(layer, ("", "_reverse")):
            key = f"l{l}{suffix}"
            ih, hh = state[f"bias_ih_{key}"].numpy(), state[f"bias_hh_{key}"].numpy()
            ba = np.asarray(params["ba"][:, 0])
            summed = slice(0, 2 * N_A) if cell == "gru" else slice(None)  # the GRU's n rows apart
            np.testing.assert_array_equal(hh[summed], original[f"bias_hh_{key}"].numpy()[summed])
            changed = np.zeros(G * N_A, bool)
            for k in range(G):
                changed[k * N_A : k * N_A + 2] = True
            kept = ~changed & (np.arange(G * N_A) < (2 * N_A if cell == "gru" else G * N_A))
            np.testing.assert_array_equal(ih[kept], original[f"bias_ih_{key}"].numpy()[kept])  # unchanged: bitwise
            rows = changed & (np.arange(G * N_A) < (2 * N_A if cell == "gru" else G * N_A))
            assert ih[rows].tolist() == (ba[rows] - hh[rows]).tolist()  # changed rows: ba − bias_hh
            ulp = np.spacing(np.maximum(np.abs(ba[summed]), np.abs(hh[summed])))
            assert np.all(np.abs((ih[summed] + hh[summed]) - ba[summed]) <= 2 * ulp)  # the sum is ba up to rounding
            if cell == "gru":  # b_in and b_hn exactly
                np.testing.assert_array_equal(ih[2 * N_A :], ba[2 * N_A :])
                np.testing.assert_array_equal(hh[2 * N_A :], np.asarray(params["bhn"][:, 0]))


@pytest.mark.parametrize("cell", ["vanilla", "gru", "lstm"])
def test_without_like_bias_ih_is_ba_and_jaxrnn_torch_jaxrnn_is_bitwise(cell):
    torch = needs_torch()
    layers = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A, num_layers=2, bidirectional=True, cell=cell)
    rng = np.random.default_rng(1)
    layers = jax.tree.map(lambda p: p + jnp.asarray(0.1 * rng.standard_normal(p.shape), p.dtype), layers)
    state = jaxrnn.to_torch(layers)
    module = torch_module(torch, cell)
    module.load_state_dict(state)
    params = layers[1][1]
    np.testing.assert_array_equal(state["bias_ih_l1_reverse"].numpy(), params["ba"][:, 0])
    hh = state["bias_hh_l1_reverse"].numpy()
    if cell == "gru":
        assert not hh[: 2 * N_A].any()
        np.testing.assert_array_equal(hh[2 * N_A :], params["bhn"][:, 0])
    else:
        assert not hh.any()
    back, options = jaxrnn.from_torch(module)
    assert options["cell"] == cell
    assert jax.tree.structure(back) == jax.tree.structure(layers)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(layers)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("cell", ["vanilla", "gru", "lstm"])
def test_bias_free_module_round_trip_and_refusal(cell):
    torch = needs_torch()
    module = torch_module(torch, cell, num_layers=2, bidirectional=False, bias=False)
    layers, _ = jaxrnn.from_torch(module)
    assert not any(jnp.any(p) for layer in layers for k, p in layer.items() if k in ("ba", "bhn"))
    assert list(jaxrnn.to_torch(layers, bias=False)) == list(module.state_dict())
    layers[1]["ba"] = layers[1]["ba"].at[0, 0].set(1.0)
    with pytest.raises(ValueError, match=r"to_torch: layers\[1\]\['ba'\][^,]* is non-zero, but like has no bias"):
        jaxrnn.to_torch(layers, like=module)
    with pytest.raises(ValueError, match=r"\(bias=False\) has no bias"):
        jaxrnn.to_torch(layers, bias=False)
    if cell == "gru":
        layers[1]["ba"] = jnp.zeros_like(layers[1]["ba"])
        layers[1]["bhn"] = layers[1]["bhn"].at[1, 0].set(1.0)
        with pytest.raises(ValueError, match=r"layers\[1\]\['bhn'\] is non-zero, but like has no bias"):
            jaxrnn.to_torch(layers, like=module)


def test_state_dict_of_numpy_arrays_needs_no_torch():
    rng = np.random.default_rng(0)
    state = {
        "weight_ih_l0": rng.standard_normal((N_A, N_X)).astype(np.float32),
        "weight_hh_l0": rng.standard_normal((N_A, N_A)).astype(np.float32),
        "bias_ih_l0": rng.standard_normal(N_A).astype(np.float32),
        "bias_hh_l0": rng.standard_normal(N_A).astype(np.float32),
    }
    layers, options = jaxrnn.from_torch(state, nonlinearity="relu", batch_first=True)
    assert options == {"cell": "vanilla", "nonlinearity": "relu", "layout": "batch_major"}
    np.testing.assert_array_equal(layers[0]["Wax"], state["weight_ih_l0"])
    np.testing.assert_array_equal(layers[0]["ba"][:, 0], state["bias_ih_l0"] + state["bias_hh_l0"])
    assert layers[0]["Wax"].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"dtype=float64 needs 64-bit mode, which is off; .* dtype=jnp.float32"):
        jaxrnn.from_torch({k: v.astype(np.float64) for k, v in state.items()})
    half, _ = jaxrnn.from_torch({k: v.astype(np.float64) for k, v in state.items()}, dtype=jnp.bfloat16)
    assert half[0]["Waa"].dtype == jnp.bfloat16


def gated_state(gates, num_layers=1, bias=True, dtype=np.float32):
    """A numpy state dict of a unidirectional PyTorch RNN with `gates` gates."""
    rng = np.random.default_rng(gates)
    state = {}
    for l in range(num_layers):
        state[f"weight_ih_l{l}"] = rng.standard_normal((gates * N_A, N_X if l == 0 else N_A)).astype(dtype)
        state[f"weight_hh_l{l}"] = rng.standard_normal((gates * N_A, N_A)).astype(dtype)
        if bias:
            state[f"bias_ih_l{l}"] = rng.standard_normal(gates * N_A).astype(dtype)
            state[f"bias_hh_l{l}"] = rng.standard_normal(gates * N_A).astype(dtype)
    return state


def test_a_state_dicts_cell_is_its_gate_count():
    gru, options = jaxrnn.from_torch(gated_state(3), batch_first=True)
    assert options == {"cell": "gru", "layout": "batch_major"}
    state = gated_state(3)
    np.testing.assert_array_equal(gru[0]["ba"][: 2 * N_A, 0], state["bias_ih_l0"][:8] + state["bias_hh_l0"][:8])
    np.testing.assert_array_equal(gru[0]["ba"][2 * N_A :, 0], state["bias_ih_l0"][8:])
    np.testing.assert_array_equal(gru[0]["bhn"][:, 0], state["bias_hh_l0"][8:])
    lstm, options = jaxrnn.from_torch(gated_state(4, 2), cell="lstm")
    assert options == {"cell": "lstm", "layout": "time_major"} and lstm[1]["Waa"].shape == (4 * N_A, N_A)
    assert "bhn" not in lstm[0]
    with pytest.raises(
        ValueError,
        match=r"from_torch: cell='gru' contradicts state_dict\['weight_hh_l0'\].shape=\(16, 4\) \(nn.LSTM\), "
        r"which holds lstm weights; expected cell='lstm'",
    ):
        jaxrnn.from_torch(gated_state(4), cell="gru")
    with pytest.raises(ValueError, match=r"nonlinearity='relu' applies to the vanilla cell; a gru cell's"):
        jaxrnn.from_torch(gated_state(3), nonlinearity="relu")


BAD_STATES = [
    (
        "projection",
        gated_state(4) | {"weight_hr_l0": np.zeros((2, N_A), np.float32)},
        r"from_torch: state_dict has \['weight_hr_l0'\]: an nn.LSTM with proj_size > 0, .* use proj_size=0",
    ),
    (
        "two-gates",
        gated_state(2),
        r"state_dict\['weight_hh_l0'\].shape=\(8, 4\); expected \(G·hidden_size, hidden_size\) with G = 1 "
        r"\(nn.RNN\), 3 \(nn.GRU\) or 4 \(nn.LSTM\)",
    ),
    (
        "gru-bias",
        gated_state(3, 2) | {"bias_hh_l1": np.zeros(N_A, np.float32)},
        r"state_dict\['bias_hh_l1'\].shape=\(4,\); expected \(3·hidden_size,\) = \(12,\) for an nn.GRU",
    ),
    (
        "lstm-ih",
        gated_state(4, 2) | {"weight_ih_l1": np.zeros((4 * N_A, N_X), np.float32)},
        r"state_dict\['weight_ih_l1'\].shape=\(16, 3\); expected \(4·hidden_size, hidden_size\) = \(16, 4\) "
        r"for an nn.LSTM",
    ),
    (
        "lstm-hh",
        gated_state(4, 2) | {"weight_hh_l1": np.zeros((3 * N_A, N_A), np.float32)},
        r"state_dict\['weight_hh_l1'\].shape=\(12, 4\); expected \(4·hidden_size, hidden_size\) = \(16, 4\)",
    ),
    (
        "missing",
        {k: v for k, v in gated_state(1, 2).items() if k != "bias_hh_l1"},
        r"does not have the keys of a PyTorch RNN, GRU or LSTM \(num_layers=2, bidirectional=False, bias=True\): "
        r"missing \['bias_hh_l1'\], unexpected \[\]",
    ),
    ("unexpected", gated_state(1) | {"weight_xx_l0": np.zeros((2, 4))}, r"missing \[\], unexpected \['weight_xx_l0'\]"),
    (
        "prefixed",
        {"rnn." + k: v for k, v in gated_state(3).items()},
        r"unexpected \['rnn.bias_hh_l0', .*pass that module or its own state_dict\(\)",
    ),
    (
        "bias-shape",
        gated_state(1, 2) | {"bias_ih_l1": np.zeros(5, np.float32)},
        r"state_dict\['bias_ih_l1'\].shape=\(5,\); expected \(hidden_size,\) = \(4,\)",
    ),
    ("int", gated_state(3) | {"bias_ih_l0": np.zeros(3 * N_A, np.int32)}, r"bias_ih_l0'\].dtype=int32 is not a float"),
    ("mixed-dtypes", gated_state(1) | {"bias_ih_l0": np.zeros(N_A, np.float16)}, r"several dtypes .* pass dtype="),
    ("empty", {}, r"missing \['weight_ih_l0', 'weight_hh_l0'\]"),
]


@pytest.mark.parametrize(("state", "message"), [case[1:] for case in BAD_STATES], ids=[c[0] for c in BAD_STATES])
def test_bad_state_dicts_say_what_is_wrong(state, message):
    with pytest.raises((ValueError, TypeError), match=message):
        jaxrnn.from_torch(state)


def test_bad_modules_and_options_say_what_is_wrong():
    torch = needs_torch()
    with pytest.raises(ValueError, match=r"from_torch: the module has proj_size=2: an nn.LSTM with proj_size > 0"):
        jaxrnn.from_torch(torch.nn.LSTM(N_X, N_A, proj_size=2))
    lstm = jaxrnn.init_stack(jax.random.key(0), N_X, N_A, cell="lstm")
    with pytest.raises(ValueError, match=r"to_torch: the module has proj_size=2: an nn.LSTM with proj_size > 0"):
        jaxrnn.to_torch(lstm, like=torch.nn.LSTM(N_X, N_A, proj_size=2))
    with pytest.raises(TypeError, match=r"expected a torch.nn.RNN, nn.GRU or nn.LSTM, or its state_dict\(\); received"):
        jaxrnn.from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"cell='lstm' contradicts the module \(an nn.GRU\), which holds gru weights"):
        jaxrnn.from_torch(torch.nn.GRU(N_X, N_A), cell="lstm")
    with pytest.raises(ValueError, match=r"nonlinearity='relu' applies to the vanilla cell; a lstm cell's"):
        jaxrnn.from_torch(torch.nn.LSTM(N_X, N_A), nonlinearity="relu")
    module = torch_module(torch, num_layers=2, bidirectional=False)
    with pytest.raises(ValueError, match=r"nonlinearity='relu' contradicts the module's nonlinearity='tanh'"):
        jaxrnn.from_torch(module, nonlinearity="relu")
    layers, _ = jaxrnn.from_torch(module)
    with pytest.raises(ValueError, match=r"like is an nn.RNN\(num_layers=2, bidirectional=False\); layers describe"):
        jaxrnn.to_torch(layers[:1], like=module)
    with pytest.raises(ValueError, match=r"to_torch: layers are vanilla layers; like is an nn.GRU's weights"):
        jaxrnn.to_torch(layers, like=torch_module(torch, "gru", bidirectional=False))
    with pytest.raises(ValueError, match=r"cell='gru' contradicts layers \(Waa.shape=\(4, 4\)\), which holds vanilla"):
        jaxrnn.to_torch(layers, cell="gru")
    wide = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A + 1, num_layers=2)
    with pytest.raises(ValueError, match=r"layers\[0\]\['Wax'\].shape=\(5, 3\) does not fit like\['weight_ih_l0'\]"):
        jaxrnn.to_torch(wide, like=module)
    headed = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A, num_layers=2, n_y=2, cell="gru")
    with pytest.raises(ValueError, match=r"layers\[1\] has an output head \(Wya, by\), which nn.GRU does not have"):
        jaxrnn.to_torch(headed)
    mixed = [layers[0], (layers[1], layers[1])]
    with pytest.raises(ValueError, match="all bidirectional or all unidirectional"):
        jaxrnn.to_torch(mixed)
    with pytest.raises(ValueError, match=r"from_torch_hidden: h.shape=\(3, 2, 4\); expected .* = 2 and hidden_size"):
        jaxrnn.from_torch_hidden(np.zeros((3, 2, 4)), layers)


def test_hidden_states_of_an_lstm_are_pairs():
    lstm = jaxrnn.init_stack(jax.random.key(0), N_X, N_A, num_layers=2, bidirectional=True, cell="lstm")
    rng = np.random.default_rng(0)
    h0, c0 = (rng.standard_normal((4, B, N_A)).astype(np.float32) for _ in range(2))
    a0 = jaxrnn.from_torch_hidden((h0, c0), lstm)
    assert isinstance(a0[1][1], jaxrnn.LSTMState)
    np.testing.assert_array_equal(a0[1][1].h, h0[3])
    np.testing.assert_array_equal(a0[1][0].c, c0[2])
    for back in (jaxrnn.to_torch_hidden(a0), jaxrnn.to_torch_hidden(a0, layers=lstm)):
        assert isinstance(back, tuple) and len(back) == 2
        np.testing.assert_array_equal(back[0], h0)
        np.testing.assert_array_equal(back[1], c0)
    # Plain pairs: (forward, reverse) by default, (h, c) for cell="lstm" or LSTM layers.
    plain = [tuple(h0[l * 2 : l * 2 + 2]) for l in range(2)]
    np.testing.assert_array_equal(jaxrnn.to_torch_hidden(plain), h0)
    one = jaxrnn.init_stack(jax.random.key(0), N_X, N_A, num_layers=2, cell="lstm")
    pairs = [(h0[l], c0[l]) for l in range(2)]
    for back in (jaxrnn.to_torch_hidden(pairs, cell="lstm"), jaxrnn.to_torch_hidden(pairs, layers=one)):
        np.testing.assert_array_equal(back[0], h0[:2])
        np.testing.assert_array_equal(back[1], c0[:2])
    nested = [tuple((h0[2 * l + d], c0[2 * l + d]) for d in range(2)) for l in range(2)]  # bidirectional (h, c)
    np.testing.assert_array_equal(jaxrnn.to_torch_hidden(nested, cell="lstm")[1], c0)
    with pytest.raises(ValueError, match=r"final_states\[0\]\[0\] must be an array \(B, hidden_size\); .*cell='lstm'"):
        jaxrnn.to_torch_hidden(nested)
    with pytest.raises(TypeError, match=r"from_torch_hidden: h must be a pair \(h_0, c_0\) of arrays for lstm"):
        jaxrnn.from_torch_hidden(h0, lstm)
    gru = jaxrnn.init_stack(jax.random.key(0), N_X, N_A, num_layers=2, bidirectional=True, cell="gru")
    with pytest.raises(TypeError, match=r"h must be one array h_0 for gru layers; received a tuple of length 2"):
        jaxrnn.from_torch_hidden((h0, c0), gru)
    with pytest.raises(ValueError, match=r"final_states has 1 layer\(s\); layers has 2"):
        jaxrnn.to_torch_hidden(a0[:1], layers=lstm)
    with pytest.raises(TypeError, match=r"final_states\[1\] must be an LSTM state \(h, c\); received ndarray"):
        jaxrnn.to_torch_hidden([pairs[0], h0[1]], cell="lstm")
    with pytest.raises(ValueError, match=r"the states have different shapes \[\(3, 4\), \(3, 5\)\]"):
        jaxrnn.to_torch_hidden([h0[0], np.zeros((B, 5), np.float32)])


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_to_torch_without_torch_says_so():
    layers = jaxrnn.init_stack(jax.random.PRNGKey(0), N_X, N_A)
    with pytest.raises(ImportError, match=r"to_torch: to_torch returns torch tensors, so it needs PyTorch"):
        jaxrnn.to_torch(layers)


def test_importing_jaxrnn_imports_no_framework():
    code = "import sys, jaxrnn; print(sorted(m for m in ('torch', 'flax', 'equinox') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow  # trains a model end to end
def test_migration_example_runs():
    needs_torch()
    namespace = runpy.run_path(str(EXAMPLE))
    errors = namespace["main"]()
    assert max(errors.values()) <= 1e-5, errors
