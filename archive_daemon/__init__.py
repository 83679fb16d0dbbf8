"""Observatory archive: the daemon and everything that writes the database."""
