"""ember: Ray Core API, light runtime."""
