"""Training the world's models on the CPU: resumable, checkpointed, logged, deterministic per step.

Each part trains in its own folder under the output directory (`lsc world train --out DIR`):

- loop: the loop every part shares (checkpoints, resume, log; batches drawn from (seed, part, step));
- data: what the models learn from (training prompts and their targets, binding, perturbed scenes);
- perception, captioner, generator: the attribute classifier and perceptual weights, Alice, Bob;
- flow_fast, vqvae_ar: the receivers trained from finished weights (a distilled student; a VQ-VAE and prior);
- parts: the part names and `train`, which runs the ones asked for.

Exporting a finished folder as shipped weights is lsc.backends.world.release's job.
"""
