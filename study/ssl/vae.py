"""Variational autoencoder (Kingma and Welling 2014, Auto-Encoding Variational Bayes)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from study.data.pipeline import AugmentConfig
from study.ssl.base import SSLMethod, WeightDecay
from study.ssl.decoders import UpsamplingDecoder


class VAE(SSLMethod):
    """The backbone is the encoder: its features map to the mean and log-variance of a diagonal Gaussian
    posterior q(z|x); a decoder scaled to the image size reconstructs x from a reparameterised sample.
    Loss: the negative ELBO per image, squared-error reconstruction (a unit-variance Gaussian likelihood on
    the standardised pixels, up to a constant) plus ``beta`` times KL(q(z|x) || N(0, I)); beta 1 is the
    paper's VAE. Adam, lr 1e-3, latent 128. The decoder's narrowest width is ``decoder_width`` (16: at 28 px
    it costs about twice the small CNN; 32 would cost eight times). Views: horizontal flip only.
    """

    name = "vae"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 1.3

    class Hparams(SSLMethod.Hparams):
        weight_decay: WeightDecay = 0.0
        latent_dim: int = Field(128, ge=1, description="latent dimension")
        beta: float = Field(1.0, ge=0, description="weight of the KL term (1: the VAE's ELBO)")
        decoder_width: int = Field(16, ge=1, description="the decoder's narrowest width")

    hp: Hparams

    def build(self) -> None:
        latent = self.hp.latent_dim
        self.to_posterior = nn.Linear(self.feature_dim, 2 * latent)
        self.decoder = UpsamplingDecoder(latent, self.in_channels, self.image_size, self.hp.decoder_width)

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(1.0, 1.0), flip=True)

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.view(x)
        mu, logvar = self.to_posterior(self.backbone(x)).chunk(2, dim=1)  # B x latent each
        logvar = logvar.clamp(-10, 10)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = self.decoder(z)  # B x C x H x W
        rec = 0.5 * (recon - x).pow(2).flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        return {"loss": rec + self.hp.beta * kl, "recon": rec, "kl": kl}
