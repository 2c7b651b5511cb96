"""The publisher service: turns the file list into signed, encrypted messages and keeps them current."""
