"""Operations tests: deployment manifests, observability, security, authorisation, faults."""
