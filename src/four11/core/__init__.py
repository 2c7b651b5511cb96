"""Shared core: wire formats, crypto, keys, groups, config and the node-side apply path.

Never imports a service package.
"""
