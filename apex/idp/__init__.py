"""A small OpenID Connect identity provider for development sign-in (authorization code + PKCE)."""
