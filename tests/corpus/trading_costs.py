"""Trading strategy backtest: positions from clipped signals, turnover costs from ``np.diff`` of
positions padded with a flat start (``np.pad``), compounded wealth by ``np.cumprod``, and a
drawdown penalty against the running peak (``np.maximum.accumulate``)."""

import numpy as np


def loss(weights, signals, returns):
    positions = np.clip(signals @ weights, -1.0, 1.0)
    turnover = np.abs(np.diff(np.pad(positions, (1, 0), mode="constant")))
    net = positions * returns - 0.002 * turnover
    wealth = np.cumprod(1.0 + net)
    peak = np.maximum.accumulate(wealth)
    drawdown = 1.0 - wealth / peak
    return -np.log(wealth[-1]) + 2.0 * np.mean(drawdown**2)


def example_args():
    rng = np.random.default_rng(402)
    returns = 0.01 * rng.standard_normal(50)
    signals = np.column_stack([np.roll(returns, -1) + 0.01 * rng.standard_normal(50), rng.standard_normal(50)])
    return np.array([30.0, 0.1]), signals, returns
