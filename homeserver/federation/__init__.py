"""Server-server API: discovery, signing, keys, sending and receiving."""
