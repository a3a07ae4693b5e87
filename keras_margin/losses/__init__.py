"""Metric losses: contrastive and triplet (with mining), as Keras losses."""

from keras_margin.losses.contrastive import ContrastiveLoss, batch_contrastive_loss, contrastive_loss
from keras_margin.losses.triplet import TripletLoss, triplet_loss

__all__ = ["ContrastiveLoss", "TripletLoss", "batch_contrastive_loss", "contrastive_loss", "triplet_loss"]
