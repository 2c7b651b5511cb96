"""The fileserver: serves the message volume over HTTP (ETag/304, long-poll watch, node tracking)."""
