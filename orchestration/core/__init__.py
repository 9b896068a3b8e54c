"""The ground floor: the error vocabulary, the one settings object, the typed data at every boundary, and the
custom-pattern specification the settings validate. Imports nothing else of the project (docs/architecture.md)."""
