"""The auth service: users, JWT access/refresh tokens, sessions, OAuth sign-in."""
