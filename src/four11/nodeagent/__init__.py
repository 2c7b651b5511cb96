"""The node agent: listens for alerts, polls, watches, and applies files from the masters."""
