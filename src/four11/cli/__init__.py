"""Command-line front ends: 411put, 411get and the 411 dispatcher."""
