"""Variational-autoencoder evidence bound with batch-normalized ReLU networks and ±1 pixels.

The encoder's output is split into means and log standard deviations; latents are reparameterized
with noise passed in; densities are scipy.stats.norm.logpdf (the prior with scalar loc 0 and scale
np.exp(0)); the decoder's Bernoulli likelihood is -np.logaddexp(0, -logits * pixels).
"""

import numpy as np
from scipy.stats import norm


def normalize_batch(z):
    centered = z - np.mean(z, axis=0, keepdims=True)
    return centered / (np.std(z, axis=0, keepdims=True) + 1)


def network(layers, x):
    *hidden, (w_last, b_last) = layers
    for w, b in hidden:
        x = np.maximum(0, normalize_batch(np.dot(x, w) + b))
    return np.dot(x, w_last) + b_last


def loss(enc_w1, enc_b1, enc_w2, enc_b2, dec_w1, dec_b1, dec_w2, dec_b2, noise, pixels):
    encoded = network([(enc_w1, enc_b1), (enc_w2, enc_b2)], pixels)
    half = np.shape(encoded)[-1] // 2
    means, log_stds = encoded[:, :half], encoded[:, half:]
    latents = noise * np.exp(log_stds) + means
    log_q = np.sum(norm.logpdf(latents, means, np.exp(log_stds)), axis=-1)
    log_prior = np.sum(norm.logpdf(latents, 0, np.exp(0)), axis=-1)
    logits = network([(dec_w1, dec_b1), (dec_w2, dec_b2)], latents)
    log_likelihood = np.sum(-np.logaddexp(0, -logits * pixels), axis=-1)
    return -np.mean(log_prior + log_likelihood - log_q) / pixels.shape[1]


def example_args():
    rng = np.random.default_rng(27)
    pixels, latent, width, batch = 5, 2, 4, 6

    def layer(m, n):
        return 0.4 * rng.standard_normal((m, n)), 0.1 * rng.standard_normal(n)

    weights = [*layer(pixels, width), *layer(width, 2 * latent), *layer(latent, width), *layer(width, pixels)]
    images = np.where(rng.random((batch, pixels)) > 0.5, 1.0, -1.0)
    return (*weights, rng.standard_normal((batch, latent)), images)
