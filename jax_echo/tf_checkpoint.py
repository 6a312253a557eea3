"""TF1 checkpoints of the author's programs: their variable names, read and written.

``tf.compat.v1.train.Saver`` stores each variable under its graph name, which the author's
programs (``tf_echo.graph``) leave to TF1: unnamed ``tf.Variable``s are ``Variable``,
``Variable_1``, ... in creation order, and a cell's weights live in the scopes ``rnn``
(``static_rnn`` or ``dynamic_rnn``), ``multi_rnn_cell/cell_{k}`` and the cell's own. By flat name:

    part 1       W Variable, b Variable_1, W2 Variable_2, b2 Variable_3
    parts 2-6    W2 Variable, b2 Variable_1, and
      part 2     cell_0/kernel rnn/basic_rnn_cell/kernel, cell_0/bias rnn/basic_rnn_cell/bias
      part 3     cell_0/kernel rnn/basic_lstm_cell/kernel, ...
      parts 4-6  cell_{k}/kernel rnn/multi_rnn_cell/cell_{k}/lstm_cell/kernel, ...
    the GRU      as parts 2-6, with cell_0/gates/kernel rnn/gru_cell/gates/kernel, ...
    stacked      rnn/multi_rnn_cell/cell_{k}/basic_rnn_cell/kernel, .../cell_{k}/gru_cell/...

Parts 4, 5 and 6 share their names: ``dynamic_rnn`` opens the same ``rnn`` scope as ``static_rnn``
and ``DropoutWrapper`` adds none. Adagrad keeps one slot per weight, ``<name>/Adagrad``.

Reading and writing need TensorFlow (the ``tf`` extra), imported only when they run.
"""

from __future__ import annotations

import glob
import importlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jax_echo.cells import Params, param_shapes, params_from_dict, params_to_dict
from jax_echo.io import CheckpointError, atomic_write
from jax_echo.optim import TF1_INITIAL_ACCUMULATOR
from jax_echo.registry import MissingExtraError
from jax_echo.task import CELL_NAMES, PARTS, EchoConfig

_PART1_NAMES = {"W": "Variable", "b": "Variable_1", "W2": "Variable_2", "b2": "Variable_3"}
_OUTPUT_NAMES = {"W2": "Variable", "b2": "Variable_1"}  # parts 2-6: created before the cell
# The scope each cell's own variables live in, for one layer alone and in a MultiRNNCell
# (tf_echo builds a BasicLSTMCell for one layer and LSTMCells for a stack, as the author does).
_CELL_SCOPES = {
    "basic_rnn": ("basic_rnn_cell", "basic_rnn_cell"),
    "lstm": ("basic_lstm_cell", "lstm_cell"),
    "gru": ("gru_cell", "gru_cell"),
}
_IGNORED = ("global_step",)  # a training counter some programs add; not a weight


def tf1_variable_names(cfg: EchoConfig, part: int | None = None) -> dict[str, str]:
    """The TF1 variable name of each flat weight name of ``cfg``'s program, in flat order.

    The names depend only on ``cfg.cell`` and ``cfg.num_layers``; ``part`` (1-6), when given, is
    checked to be a program of that model (parts 4, 5 and 6 have the same names).

    >>> tf1_variable_names(EchoConfig.for_part(1))
    {'W': 'Variable', 'b': 'Variable_1', 'W2': 'Variable_2', 'b2': 'Variable_3'}
    >>> tf1_variable_names(EchoConfig.for_part(4))["cell_2/bias"]
    'rnn/multi_rnn_cell/cell_2/lstm_cell/bias'
    """
    if part is not None:
        if part not in PARTS:
            raise ValueError(f"the tutorial series has parts 1-6, got part {part!r}")
        program = EchoConfig.for_part(part)
        if _model(program) != _model(cfg):
            raise ValueError(
                f"part {part}'s program has cell={program.cell!r} with {program.num_layers} "
                f"layer(s), but cfg has cell={cfg.cell!r} with {cfg.num_layers}"
            )
    if cfg.cell == "tutorial":
        return dict(_PART1_NAMES)
    scope = _CELL_SCOPES[cfg.cell][cfg.num_layers > 1]
    names = {}
    for name in param_shapes(cfg):  # cell_{k}/kernel, cell_{k}/gates/bias, ..., W2, b2
        layer, _, weight = name.partition("/")
        if weight:
            outer = "rnn" if cfg.num_layers == 1 else f"rnn/multi_rnn_cell/{layer}"
            names[name] = f"{outer}/{scope}/{weight}"
    return names | _OUTPUT_NAMES


def params_from_tf_checkpoint(
    path: str | os.PathLike, cfg: EchoConfig, *, part: int | None = None
) -> Params:
    """The weights of a TF1 checkpoint of ``cfg``'s program (``Saver().save(sess, path)``), as
    ``Params`` in its dtype; Adagrad's slots (``<name>/Adagrad``) and ``global_step`` are ignored.

    Args:
      path: the checkpoint prefix (``model.ckpt``), or a directory with a ``checkpoint`` file.
      cfg: the model it holds (cell, layers, sizes).
      part: the part (1-6) whose program wrote it, checked against ``cfg``; ``None``: any.

    Raises:
      CheckpointError (a ``ValueError``): not a checkpoint, another model's variables (named),
        or a variable missing or of another shape.
      MissingExtraError: TensorFlow is not installed.
    """
    tf = _tensorflow()
    names = tf1_variable_names(cfg, part)
    try:
        reader = tf.train.load_checkpoint(os.fspath(path))
    except (tf.errors.OpError, ValueError) as e:
        first_line = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise CheckpointError(
            f"{path} is not a readable TensorFlow checkpoint: {first_line}"
        ) from e
    found = reader.get_variable_to_shape_map()
    _check_names(path, found, names, cfg)
    expected = param_shapes(cfg)
    flat = {}
    for flat_name, tf1_name in names.items():
        got, want = tuple(found[tf1_name]), expected[flat_name]
        if got != want:
            raise CheckpointError(
                f"{path}: variable {tf1_name!r} ({flat_name}) has shape {got}, expected {want} "
                f"for {_describe(cfg)}, state_size={cfg.state_size}, "
                f"num_classes={cfg.num_classes}"
            )
        flat[flat_name] = np.asarray(reader.get_tensor(tf1_name))
    return params_from_dict(flat, cfg)


def params_to_tf_checkpoint(
    params: Any, cfg: EchoConfig, path: str | os.PathLike, *, part: int | None = None
) -> str:
    """Writes ``params`` as the TF1 checkpoint the author's program restores; returns ``path``.

    TF1's ``Saver`` writes them with TF1's names, in the params' dtype, with Adagrad's slots at
    their start value (0.1): restored, they train as fresh weights would.

    Args:
      params: ``Params`` or a flat TF1-layout dict, checked against ``cfg``.
      cfg: the model.
      path: the checkpoint prefix (``model.ckpt``); its directory is created if need be.
      part: the part (1-6) whose program will restore it, checked against ``cfg``.

    Raises ``ValueError`` for params that are not ``cfg``'s, ``MissingExtraError`` without TF.
    """
    tf = _tensorflow()
    tf1 = tf.compat.v1
    flat = params_to_dict(params_from_dict(params, cfg))
    names = tf1_variable_names(cfg, part)
    graph = tf.Graph()
    feed, var_list = {}, {}
    with graph.as_default():
        for flat_name, tf1_name in names.items():
            value = np.asarray(flat[flat_name])
            dtype = tf.as_dtype(value.dtype)
            value_in = tf1.placeholder(dtype, value.shape)
            feed[value_in] = value
            var_list[tf1_name] = tf1.Variable(value_in, name=tf1_name)
            slot = tf.fill(value.shape, tf.constant(TF1_INITIAL_ACCUMULATOR, dtype))
            var_list[f"{tf1_name}/Adagrad"] = tf1.Variable(slot, name=f"{tf1_name}/Adagrad")
        saver = tf1.train.Saver(var_list)
        init = tf1.global_variables_initializer()
    with tf1.Session(graph=graph) as sess:
        sess.run(init, feed)
        return write_with_saver(saver, sess, path)


def write_with_saver(saver: Any, sess: Any, path: str | os.PathLike) -> str:
    """``saver.save(sess, path)`` without a meta graph or ``checkpoint`` file, safely; ``path``.

    TF1's two files (``path.index`` and its data) cannot be replaced in one rename: Saver writes
    them into a temporary directory beside ``path``, then ``io.atomic_write`` moves each into
    place, the index last, and an older checkpoint's extra shards are removed. A failed save
    leaves an existing checkpoint untouched; only a crash between the moves could mix the two.
    """
    prefix = Path(path)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=prefix.parent, prefix=f".{prefix.name}.", suffix=".tmp"))
    try:
        with sess.graph.as_default():  # outside its graph, TF2's Saver takes the eager path
            saver.save(sess, str(tmp / "ckpt"), write_meta_graph=False, write_state=False)
        written = sorted(tmp.glob("ckpt.*"), key=lambda f: (f.suffix == ".index", f.name))
        targets = {f: prefix.with_name(prefix.name + f.name.removeprefix("ckpt")) for f in written}
        for f, target in targets.items():  # the index last, and then the directory synced
            data = f.read_bytes()
            atomic_write(target, lambda out, data=data: out.write(data), sync_dir=f == written[-1])
        new = {target.name for target in targets.values()}
        for old in prefix.parent.glob(f"{glob.escape(prefix.name)}.data-*"):
            if old.name not in new:  # a shard of an older checkpoint that had more of them
                old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return os.fspath(path)


# --- Checks ---------------------------------------------------------------------------------


def _tensorflow():
    try:
        return importlib.import_module("tensorflow")
    except ImportError as e:
        raise MissingExtraError(
            f"TensorFlow is not installed ({e}), and TF1 checkpoints need it; "
            "install the extra: pip install 'jax-echo[tf]'"
        ) from e


def _weights(found: dict[str, Any]) -> list[str]:
    """The checkpoint's variables that are not another's slot (``<name>/Adagrad``) or ignored."""
    return sorted(
        name
        for name in found
        if name not in _IGNORED and not any(name.startswith(f"{other}/") for other in found)
    )


def _check_names(path, found: dict[str, Any], names: dict[str, str], cfg: EchoConfig) -> None:
    weights = _weights(found)
    missing = [n for n in names.values() if n not in found]
    unexpected = [n for n in weights if n not in names.values()]
    if not missing and not unexpected:
        return
    needs = f"{_describe(cfg)} has the TF1 variables {list(names.values())}"
    other = _identify(weights)
    if other is not None:
        raise CheckpointError(
            f"{path} is a checkpoint of another model: its variables {weights} are those of "
            f"{_describe(other)}, but {needs}"
        )
    problems = []
    if missing:
        flat = {tf1: flat for flat, tf1 in names.items()}
        problems.append("missing " + ", ".join(f"{n!r} ({flat[n]})" for n in missing))
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    raise CheckpointError(f"{path} does not hold cfg's weights: {'; '.join(problems)}; {needs}")


def _identify(weights: list[str]) -> EchoConfig | None:
    """The model (cell, layers) whose TF1 names are exactly ``weights``, if any."""
    layers = [int(k) for k in re.findall(r"multi_rnn_cell/cell_(\d+)/", " ".join(weights))]
    num_layers = max(layers, default=0) + 1
    for cell in CELL_NAMES:
        if cell == "tutorial" and num_layers > 1:
            continue
        candidate = EchoConfig(cell=cell, num_layers=num_layers)
        if sorted(tf1_variable_names(candidate).values()) == weights:
            return candidate
    return None


def _describe(cfg: EchoConfig) -> str:
    """``cell='lstm' with 3 layer(s) (parts 4-6)``: a model and the parts that run it."""
    parts = [n for n in PARTS if _model(EchoConfig.for_part(n)) == _model(cfg)]
    which = ""
    if parts:
        which = f" (part {parts[0]})" if len(parts) == 1 else f" (parts {parts[0]}-{parts[-1]})"
    return f"cell={cfg.cell!r} with {cfg.num_layers} layer(s){which}"


def _model(cfg: EchoConfig) -> tuple[str, int]:
    return cfg.cell, cfg.num_layers  # all that TF1's names depend on
