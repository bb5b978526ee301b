"""Shared infrastructure every stage imports: params loading, atomic I/O, table schemas, typed
stage contracts, the error base class and the stage runner. Domain packages (`builders`, `dedup`,
`cards`, `train`) import from here; nothing here imports from them."""
