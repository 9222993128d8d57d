"""The gymnasium side: making envs from ids and files, vectorising them, playing a model.

Needs gymnasium (installed with pgdeploy); never imported by :mod:`pgdeploy.runtime`.
Import the module you need: :mod:`~pgdeploy.envs.making`,
:mod:`~pgdeploy.envs.worker_vector_env`, :mod:`~pgdeploy.envs.play`.
"""
