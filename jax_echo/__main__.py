from jax_echo.cli import run

run()
