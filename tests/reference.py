"""The series' models written out step by step in NumPy float64, from docs/tutorial.md's cell math.

Independent of jax_echo's code: flat TF1-layout weights in, per-step loops, no shared helpers.
"""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def cell_step(cell, w, layer, state, x):
    """One TF1 cell step on flat weights ``w``; returns (state, output)."""
    p = f"cell_{layer}/"
    if cell == "tutorial":
        h = np.tanh(np.concatenate([x, state], 1) @ w["W"] + w["b"])
        return h, h
    if cell == "basic_rnn":
        h = np.tanh(np.concatenate([x, state], 1) @ w[p + "kernel"] + w[p + "bias"])
        return h, h
    if cell == "lstm":
        c, h = state
        i, j, f, o = np.split(np.concatenate([x, h], 1) @ w[p + "kernel"] + w[p + "bias"], 4, 1)
        c = c * sigmoid(f + 1.0) + sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * sigmoid(o)
        return (c, h), h
    if cell == "gru":
        h = state
        gates = sigmoid(np.concatenate([x, h], 1) @ w[p + "gates/kernel"] + w[p + "gates/bias"])
        r, u = np.split(gates, 2, 1)
        cand = np.concatenate([x, r * h], 1) @ w[p + "candidate/kernel"]
        c = np.tanh(cand + w[p + "candidate/bias"])
        h = u * h + (1 - u) * c
        return h, h
    raise ValueError(cell)


def forward(cfg, w, x_BxT, state, masks_TxLxBxS=None):
    """Logits (B, T, C) and the final state, layers stacked per time step."""
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    state = [s if not isinstance(s, tuple) else tuple(s) for s in state]
    logits = []
    for t in range(x_BxT.shape[1]):
        out = np.asarray(x_BxT[:, t : t + 1], np.float64)
        for layer in range(cfg.num_layers):
            state[layer], out = cell_step(cfg.cell, w, layer, state[layer], out)
            if masks_TxLxBxS is not None:
                out = out * masks_TxLxBxS[t][layer]
        logits.append(out @ w["W2"] + w["b2"])
    return np.stack(logits, axis=1), tuple(state)


def loss(cfg, w, x_BxT, y_BxT, state):
    logits, _ = forward(cfg, w, x_BxT, state)
    logits = logits - logits.max(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_p, y_BxT[..., None], -1).mean()


def zero_state(cfg, B=None):
    B = cfg.batch_size if B is None else B
    z = lambda: np.zeros((B, cfg.state_size))  # noqa: E731
    return tuple((z(), z()) if cfg.cell == "lstm" else z() for _ in range(cfg.num_layers))


def random_state(cfg, seed, scale=0.5):
    rng = np.random.default_rng(seed)
    draw = lambda: rng.uniform(-scale, scale, (cfg.batch_size, cfg.state_size))  # noqa: E731
    return tuple((draw(), draw()) if cfg.cell == "lstm" else draw() for _ in range(cfg.num_layers))
