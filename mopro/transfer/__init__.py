"""Transfer of a pretrained encoder: into an mmpretrain classifier
(:mod:`.pretrained_init`, registered by ``import mopro``) and into
Detectron2 (conversion, training, installation, its compatibility
patch)."""
