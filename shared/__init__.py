"""The contract between precompute and simulate: oracle schema, backbone metadata, samplers (π).

Nothing in this package imports torch or timm.
"""
