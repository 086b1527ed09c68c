"""Bridges to other model formats: diffusers folders in (as teachers) and out (as pipelines).

Kept apart from the core so that ``import rdmd`` never pulls in diffusers' pipeline machinery.
"""
