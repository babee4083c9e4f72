"""Shared fixtures: devices, float64 and strict promotion."""

import jax
import pytest

PLATFORMS = ("cpu", "gpu", "tpu")


def _first_device(platform):
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        return None
    return devices[0] if devices else None


@pytest.fixture(params=PLATFORMS)
def device(request):
    """Each test that takes `device` runs once per platform: CPU always, GPU/TPU where present."""
    found = _first_device(request.param)
    if found is None:
        pytest.skip(f"no {request.param} device")
    with jax.default_device(found):
        yield found


@pytest.fixture
def x64(device):
    """float64 inside this test only (skipped on TPU, which has no float64)."""
    if device.platform == "tpu":
        pytest.skip("no float64 on TPU")
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def strict_numerics():
    """No silent dtype promotion or rank broadcasting in jaxrnn's arithmetic; full float32
    matrix products (GPUs default to TF32, which would blur every float32 comparison)."""
    with (
        jax.numpy_dtype_promotion("strict"),
        jax.numpy_rank_promotion("raise"),
        jax.default_matmul_precision("float32"),
    ):
        yield


@pytest.fixture
def cpu_device():
    """The CPU, for checks that hold on CPU only (e.g. bitwise reproducibility); skipped when
    JAX runs without its CPU platform (JAX_PLATFORMS=cuda)."""
    found = _first_device("cpu")
    if found is None:
        pytest.skip("no cpu device (JAX_PLATFORMS excludes it)")
    with jax.default_device(found):
        yield found
