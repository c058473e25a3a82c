"""Look-ups archive makes in other services when it builds a dossier."""
