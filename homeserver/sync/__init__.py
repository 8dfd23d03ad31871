"""/sync and the notifier that wakes long polls."""
