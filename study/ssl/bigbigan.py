"""BigBiGAN (Donahue and Simonyan 2019, Large Scale Adversarial Representation Learning), on the BiGAN
scheme (Donahue, Krähenbühl and Darrell 2017, Adversarial Feature Learning), scaled to the image size."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from study.data.pipeline import AugmentConfig
from study.ssl.base import LearningRate, SSLMethod, WeightDecay, check_finite
from study.ssl.decoders import UpsamplingDecoder


class JointDiscriminator(nn.Module):
    """BigBiGAN's discriminator: F(x) a strided conv net, H(z) an MLP, J(F, H) an MLP on both; it returns
    the three scores (s_x, s_z, s_xz), each B, from a linear unary head on F, on H, and from J. Spectral
    normalisation on every layer (as BigGAN)."""

    def __init__(self, in_channels: int, image_size: int, latent_dim: int, width: int = 32, dim: int = 256) -> None:
        super().__init__()
        n_down = max(1, math.ceil(math.log2(max(image_size, 8) / 4)))  # down to about 4 px
        chans = [in_channels] + [width * 2 ** min(i, 3) for i in range(n_down)]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, inplace=True)]
        self.f = nn.Sequential(
            *layers,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            spectral_norm(nn.Linear(chans[-1], dim)),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.h = nn.Sequential(
            spectral_norm(nn.Linear(latent_dim, dim)),
            nn.LeakyReLU(0.2, inplace=True),
            spectral_norm(nn.Linear(dim, dim)),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.j = nn.Sequential(
            spectral_norm(nn.Linear(2 * dim, dim)), nn.LeakyReLU(0.2, inplace=True), spectral_norm(nn.Linear(dim, 1))
        )
        self.score_x = spectral_norm(nn.Linear(dim, 1))
        self.score_z = spectral_norm(nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fx, hz = self.f(x), self.h(z)  # B x dim each
        return self.score_x(fx)[:, 0], self.score_z(hz)[:, 0], self.j(torch.cat([fx, hz], 1))[:, 0]


class BigBiGAN(SSLMethod):
    """An encoder E (the backbone, then an MLP to a Gaussian over z, sampled by reparameterisation), a
    generator G(z) and a joint discriminator D(x, z) trained adversarially with BigBiGAN's hinge losses:
    D separates real pairs (x, E(x)) from generated pairs (G(z), z) on the unary scores s_x, s_z and the
    joint score s_xz; E and G minimise the sum of the three scores' real-minus-fake gaps. At the optimum
    E inverts G, so E's features encode what generates the image. The generator and discriminator are
    small convolutional nets whose depth follows the image size and whose narrowest width is ``gan_width``
    (the paper's are BigGAN-sized).

    Defaults: latent 120 (BigGAN's), Adam lr 2e-4 for E, G and D with betas (0.5, 0.999), one D step per
    E/G step. The per-epoch ``ssl_loss`` is the discriminator's hinge loss; ``ssl_eg`` the E/G loss.
    Views: horizontal flip only.
    """

    name = "bigbigan"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 1.88

    class Hparams(SSLMethod.Hparams):
        optimizer: Literal["adam"] = Field("adam", description="optimiser (BigBiGAN's are Adam)")
        lr: LearningRate = 2e-4
        weight_decay: WeightDecay = 0.0
        beta1: float = Field(0.5, ge=0, lt=1, description="Adam's beta1")
        beta2: float = Field(0.999, ge=0, lt=1, description="Adam's beta2")
        latent_dim: int = Field(120, ge=1, description="latent dimension (BigGAN's 120)")
        gan_width: int = Field(16, ge=1, description="narrowest width of the generator and discriminator")
        d_steps: int = Field(1, ge=1, description="discriminator steps per encoder/generator step")

    hp: Hparams

    def build(self) -> None:
        latent = self.hp.latent_dim
        self.to_latent = nn.Sequential(
            nn.Linear(self.feature_dim, self.feature_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.feature_dim, 2 * latent),
        )
        self.image_generator = UpsamplingDecoder(latent, self.in_channels, self.image_size, self.hp.gan_width)
        self.discriminator = JointDiscriminator(self.in_channels, self.image_size, latent, self.hp.gan_width)

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(1.0, 1.0), flip=True)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        mu, s = self.to_latent(self.backbone(x)).chunk(2, dim=1)  # B x latent each
        z: torch.Tensor = mu + F.softplus(s) * torch.randn_like(mu)
        return z

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = torch.tanh(self.image_generator(z)) * 2.0  # standardised pixels lie in about [-2, 2]
        return x

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.hp.beta1, self.hp.beta2)
        eg = [p for m in (self.backbone, self.to_latent, self.image_generator) for p in m.parameters()]
        return [
            torch.optim.Adam(self.discriminator.parameters(), lr=self.hp.lr, betas=betas),
            torch.optim.Adam(eg, lr=self.hp.lr, betas=betas, weight_decay=self.hp.weight_decay),
        ]

    def step(self, x: torch.Tensor, index: torch.Tensor, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        opt_d, opt_eg = optimizers
        x = self.view(x)
        b, latent = x.shape[0], self.hp.latent_dim
        # discriminator: hinge loss on each of the three scores, real pairs up, generated pairs down
        for _ in range(self.hp.d_steps):
            z = torch.randn(b, latent, generator=self.generator).to(x.device)
            with torch.no_grad():
                z_hat, x_fake = self.encode(x), self.generate(z)
            real, fake = self.discriminator(x, z_hat), self.discriminator(x_fake, z)
            loss_d = torch.stack([F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)]).sum()
            check_finite(loss_d)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            opt_d.step()
        # encoder and generator: make real pairs look generated and generated pairs look real
        z = torch.randn(b, latent, generator=self.generator).to(x.device)
        real, fake = self.discriminator(x, self.encode(x)), self.discriminator(self.generate(z), z)
        loss_eg = torch.stack([r.mean() - f.mean() for r, f in zip(real, fake)]).sum()
        check_finite(loss_eg)
        opt_eg.zero_grad(set_to_none=True)
        loss_eg.backward()  # type: ignore[no-untyped-call]
        opt_eg.step()
        return {"loss": float(loss_d.detach()), "eg": float(loss_eg.detach())}
