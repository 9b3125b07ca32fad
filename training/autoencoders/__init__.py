"""Latent autoencoders for aligned fakes: TAEF2 and our own families, and training ours."""
