"""Training: REINFORCE on gymnasium envs, checkpoints and run artefacts (the ``train`` extra).

Import the modules you need (``pgdeploy.training.train``, ``pgdeploy.training.config``);
this package itself imports nothing, so the CLI can read the config without torch.
"""
