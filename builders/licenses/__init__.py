"""License provenance: the registry derived from the Data Provenance Initiative's audit, and the policy."""
