"""`jaxrnn verify`: passes on the real backward, fails on a wrong one."""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import jaxrnn
import jaxrnn.cli
import jaxrnn.verify


@pytest.mark.slow  # every cell, both dtypes, both oracles (the library calls are checked elsewhere)
def test_verify_command_passes(capsys):
    status = jaxrnn.cli.main(["verify", "--n-x", "3", "--n-a", "4", "--n-y", "2", "--batch", "2", "--steps", "5"])
    out = capsys.readouterr().out
    assert status == 0
    platform = jax.devices()[0].platform
    for cell in ("vanilla", "gru", "lstm"):
        if platform != "tpu":
            assert f"| {platform:<6} | {cell:<7} | float64 | finite diff" in out
    assert "FAIL" not in out
    for name in ("x", "a0", "h0", "c0", "Wax", "Waa", "Wya", "ba", "bhn", "by"):
        assert f"| {name} " in out


@functools.partial(jax.custom_vjp, nondiff_argnums=())
def _slightly_wrong_rnn(x, a0, params):
    return jaxrnn.rnn_autodiff(x, a0, params, layout="seed")


def _fwd(x, a0, params):
    outputs, vjp = jax.vjp(functools.partial(jaxrnn.rnn_autodiff, layout="seed"), x, a0, params)
    return outputs, vjp


def _bwd(vjp, cotangents):
    dx, da0, dparams = vjp(cotangents)
    # A 1e-4 relative error in one gradient: more than float32 noise, less than a typo.
    return dx, da0, dict(dparams, Waa=dparams["Waa"] * (1 + jnp.asarray(1e-4, dparams["Waa"].dtype)))


_slightly_wrong_rnn.defvjp(_fwd, _bwd)


def _slightly_wrong_layer(x, a0, params, *, layout, cell):
    assert layout == "seed" and cell == "vanilla"
    return _slightly_wrong_rnn(x, a0, params)


def test_verify_catches_a_wrong_gradient(monkeypatch, capsys):
    monkeypatch.setattr(jaxrnn.verify, "rnn", _slightly_wrong_layer)
    arguments = ["--n-x", "3", "--n-a", "4", "--n-y", "2", "--batch", "2", "--steps", "5", "--cells", "vanilla"]
    status = jaxrnn.cli.main(["verify", *arguments])
    out = capsys.readouterr().out
    assert status == 1
    failing = [line for line in out.splitlines() if "FAIL" in line]
    assert failing and all("| Waa " in line for line in failing)


@pytest.mark.slow  # a fresh interpreter
def test_python_dash_m_entry_point():
    tiny = ["--n-x", "1", "--n-a", "2", "--n-y", "2", "--batch", "1", "--steps", "2", "--cells", "lstm"]
    result = subprocess.run([sys.executable, "-m", "jaxrnn", "verify", *tiny], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "0 failed" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "jaxrnn", "verify", "--steps", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--steps=0 must be a positive int" in bad.stderr
