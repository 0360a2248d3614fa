"""autograd's examples/fluidsim, written anew: smoke carried by a velocity field on a periodic grid
(semi-Lagrangian advection by bilinear interpolation, a Jacobi pressure projection with
``np.roll``), scored against a target image. As in the original, the gradient with respect to the
initial velocities flows through the interpolation weights; the cell indices are integers."""

import numpy as np


def project(vx, vy):
    """Make the velocity field nearly divergence-free, with a few Jacobi iterations for the pressure."""
    p = np.zeros(vx.shape)
    h = 1.0 / vx.shape[0]
    div = (
        -0.5 * h * (np.roll(vx, -1, axis=0) - np.roll(vx, 1, axis=0) + np.roll(vy, -1, axis=1) - np.roll(vy, 1, axis=1))
    )
    for _ in range(4):
        p = (
            div + np.roll(p, 1, axis=0) + np.roll(p, -1, axis=0) + np.roll(p, 1, axis=1) + np.roll(p, -1, axis=1)
        ) / 4.0
    vx -= 0.5 * (np.roll(p, -1, axis=0) - np.roll(p, 1, axis=0)) / h
    vy -= 0.5 * (np.roll(p, -1, axis=1) - np.roll(p, 1, axis=1)) / h
    return vx, vy


def advect(f, vx, vy):
    """Move field ``f`` along the velocities: read it back at each cell minus the velocity."""
    rows, cols = f.shape
    cell_ys, cell_xs = np.meshgrid(np.arange(rows), np.arange(cols))
    center_xs = (cell_xs - vx).ravel()
    center_ys = (cell_ys - vy).ravel()
    left_ix = np.floor(center_xs).astype(int)
    top_ix = np.floor(center_ys).astype(int)
    rw = center_xs - left_ix
    bw = center_ys - top_ix
    left_ix = np.mod(left_ix, rows)
    right_ix = np.mod(left_ix + 1, rows)
    top_ix = np.mod(top_ix, cols)
    bot_ix = np.mod(top_ix + 1, cols)
    flat_f = (1 - rw) * ((1 - bw) * f[left_ix, top_ix] + bw * f[left_ix, bot_ix]) + rw * (
        (1 - bw) * f[right_ix, top_ix] + bw * f[right_ix, bot_ix]
    )
    return np.reshape(flat_f, (rows, cols))


def loss(velocities, smoke, target):
    vx, vy = velocities[0], velocities[1]
    for _ in range(2):
        vx_updated = advect(vx, vx, vy)
        vy_updated = advect(vy, vx, vy)
        vx, vy = project(vx_updated, vy_updated)
        smoke = advect(smoke, vx, vy)
    return np.mean((target - smoke) ** 2)


def example_args():
    rng = np.random.default_rng(21)
    smoke = np.zeros((8, 8))
    smoke[2:4, 2:6] = 1.0
    return 0.3 * rng.standard_normal((2, 8, 8)), smoke, np.roll(smoke, 2, axis=0)
