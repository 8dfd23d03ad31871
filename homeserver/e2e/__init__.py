"""End-to-end encryption support: the server stores and routes keys and to-device messages; it
never holds anything that decrypts a message."""
