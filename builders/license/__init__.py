"""Stage `license` (`python -m builders.license`): provenance for every row from the registry
derived from the Data Provenance Initiative's audit (`refresh`), and the policy."""
