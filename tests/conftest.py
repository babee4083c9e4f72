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


# Device parametrisations are collected for the platforms present only (no wall of skips on a
# CPU machine); the header says which were left out.
PRESENT = tuple(platform for platform in PLATFORMS if _first_device(platform) is not None)


def pytest_configure(config):
    """Compiled programs are kept in JAX's persistent compilation cache, inside pytest's cache
    directory (`.pytest_cache/d/jax-compilation-cache`; `pytest --cache-clear` empties it): most of
    the suite's time is XLA compiling, tests compile many identical programs, and a second run
    compiles almost nothing. Not with `-p no:cacheprovider`, or where `JAX_COMPILATION_CACHE_DIR`
    already names a cache."""
    cache = getattr(config, "cache", None)
    if cache is None or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(cache.mkdir("jax-compilation-cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_report_header(config):
    absent = [platform for platform in PLATFORMS if platform not in PRESENT]
    left_out = f"; not collected (no device): {', '.join(absent)}" if absent else ""
    return f"jaxrnn: jax {jax.__version__}, device tests on {', '.join(PRESENT)}{left_out}"


@pytest.fixture(params=PRESENT)
def device(request):
    """Each test that takes `device` runs once per platform present: CPU, and GPU/TPU where present."""
    with jax.default_device(_first_device(request.param)):
        yield _first_device(request.param)


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
