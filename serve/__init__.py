"""assetfs serve: the HTTP face of a store (docs/http.md).

A view of the store like fusefs/: `cas/` never imports it; the CLI imports it inside the
`serve`, `token` and `url` commands.
"""
