"""XLA:CPU's small-loop option: set for jax_echo's process, never over the user's choice."""

from jax_echo import policy, xla_flags


def test_the_option_is_appended_to_the_users_other_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    assert xla_flags.apply(environ, backend_started=False) is True
    assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=4 {xla_flags.FLAG}"
    environ = {}
    assert xla_flags.apply(environ, backend_started=False) is True
    assert environ["XLA_FLAGS"] == xla_flags.FLAG


def test_too_late_is_said_not_pretended():
    """Once a backend has read XLA_FLAGS the option cannot take effect: the policy then keeps the
    unrolled windows."""
    environ = {}
    assert xla_flags.apply(environ, backend_started=True) is False and environ == {}


def test_the_users_own_value_is_kept():
    mine = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=123"
    environ = {"XLA_FLAGS": mine}
    assert xla_flags.apply(environ, backend_started=False) is True
    assert environ["XLA_FLAGS"] == mine
    other = "--xla_backend_extra_options=some_other_option=1"
    environ = {"XLA_FLAGS": other}
    assert xla_flags.apply(environ, backend_started=False) is False
    assert environ["XLA_FLAGS"] == other


def test_the_option_can_be_refused():
    environ = {xla_flags.OPT_OUT: "0"}
    assert xla_flags.apply(environ, backend_started=False) is False and "XLA_FLAGS" not in environ


def test_this_process_compiles_with_it_and_rolls_the_gated_cells():
    """The suite imports jax_echo before any computation, as a user's program does."""
    assert xla_flags.SMALL_LOOPS
    assert policy.window_unroll("lstm", 15, 1) == 1 and policy.window_unroll("gru", 15, 1) == 1
    assert policy.window_unroll("tutorial", 15, 1) == 15
    assert policy.window_unroll("tutorial", 100, 1) == 1


def test_a_child_process_can_be_started_without_it():
    """The option this process put in XLA_FLAGS would reach a child through its environment
    (and count there as the user's own): ``without`` takes it out and opts out."""
    import subprocess
    import sys

    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PATH": "x"}
    xla_flags.apply(environ, backend_started=False)
    child = xla_flags.without(environ)
    assert child == {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PATH": "x",
        xla_flags.OPT_OUT: "0",
    }
    assert xla_flags.apply(dict(child), backend_started=False) is False
    code = "import jax_echo.xla_flags as f, os; print(f.SMALL_LOOPS, os.environ['XLA_FLAGS'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=xla_flags.without(), capture_output=True, text=True
    )
    assert out.stdout.split()[0] == "False" and xla_flags.OPTION not in out.stdout
