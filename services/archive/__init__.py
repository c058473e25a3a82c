"""归档 archive: sealed dossiers, their hash chain, search, exports and reports."""
