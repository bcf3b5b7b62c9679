"""Metrics beyond the backend's perceptual distance: SSIM/PSNR (`image`), BLEU/ROUGE-L (`text`)."""
