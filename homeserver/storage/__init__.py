"""Storage: one async Database over SQLite (aiosqlite) or PostgreSQL (asyncpg)."""
