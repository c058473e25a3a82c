"""The API gateway: the one public entry of Minsheng."""
